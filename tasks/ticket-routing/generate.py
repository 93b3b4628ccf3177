"""Generate the ticket-routing task: customer-support messages labelled with the team that handles them.

Deterministic from the seed: `python tasks/ticket-routing/generate.py` rewrites data.jsonl byte for byte.
Every message is assembled from the templates below (no copied dataset). Some messages mention a
second topic in passing, so the label depends on the customer's actual request, not on a keyword.
"""

import json
import random
from pathlib import Path

SEED = 1234
PER_LABEL = 100

PRODUCTS = [
    "Aero X2 headphones",
    "Lumo desk lamp",
    "Kettle Pro 1.7L",
    "TrailMate backpack",
    "Nimbus router",
    "PixelFrame 10",
    "Volt power bank",
    "Orbit smartwatch",
    "Breeze air purifier",
    "Cora coffee grinder",
]
OPENERS = ["Hi,", "Hello team,", "Hey there.", "Good morning,", "To whom it may concern,", "", "", "Hi support,"]
CLOSERS = ["Thanks.", "Thank you!", "Please help.", "Regards, {name}", "Cheers, {name}", "", "", "Appreciate it."]
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emre", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kofi", "Lena"]

TEMPLATES = {
    "billing": [
        "I was charged twice for order #{order}. Please refund the duplicate payment of ${amount}.",
        "My invoice for {month} shows ${amount} but I expected a lower amount. Can you explain the charge?",
        "Your site took ${amount} from my card but the payment page showed an error.",
        "How do I update the credit card you bill each month? The old one expired.",
        "I need a VAT invoice for order #{order} for my company's accounts.",
        "The discount code was not applied and I paid full price (${amount}) for the {product}.",
        "Why is there a ${amount} fee on my statement from your store? I don't recognise it.",
        "Can I pay for order #{order} in instalments instead of all at once?",
        "I cancelled my subscription in {month} but I was still billed ${amount}.",
        "The {product} arrived fine, but the receipt charges me tax twice.",
    ],
    "shipping": [
        "My order #{order} still hasn't arrived and the tracking has not updated for {days} days.",
        "The courier says the {product} was delivered but nothing is at my door.",
        "Can I change the delivery address for order #{order}? I moved last week.",
        "How long does shipping to {country} usually take?",
        "The tracking link for order #{order} gives an error page.",
        "Is express delivery available for the {product}? I need it before {month} ends.",
        "The parcel with my {product} was left in the rain and the box is soaked, but the item looks okay. Can you use a better drop-off next time?",
        "Order #{order} was split into two parcels and only one came. Where is the second?",
        "Do you ship to PO boxes? I live in {country}.",
        "My package has been stuck at customs in {country} for {days} days.",
    ],
    "technical": [
        "The {product} will not turn on even after charging it overnight.",
        "My {product} keeps disconnecting from wifi every few minutes.",
        "The app crashes whenever I try to pair the {product}.",
        "After the latest firmware update the {product} is very slow.",
        "The {product} makes a loud buzzing noise when it runs. Is this normal?",
        "How do I reset the {product} to factory settings? The manual doesn't say.",
        "The display on my {product} flickers and shows random lines.",
        "The {product} gets very hot after {days} minutes of use.",
        "I paid for the {product} last month and now the battery lasts only an hour. How can I fix the battery drain?",
        "Bluetooth pairing fails with error code E{order_short} on my {product}.",
    ],
    "account": [
        "I can't log in to my account; the password reset email never arrives.",
        "Please change the email address on my account to a new one.",
        "My account was locked after too many login attempts. Can you unlock it?",
        "How do I delete my account and all my personal data?",
        "I think someone else logged into my account from {country}.",
        "Two-factor authentication codes are not accepted when I sign in.",
        "Can I merge my two accounts? I have order history in both.",
        "I want to change the username on my profile.",
        "The site says my email is already registered, but I never made an account.",
        "How do I turn off marketing emails in my account settings?",
    ],
    "returns": [
        "I'd like to return the {product}; it doesn't fit my needs. What is the process?",
        "The {product} arrived damaged. I want to send it back for a replacement.",
        "Can I exchange the {product} for a different colour?",
        "I sent back order #{order} {days} days ago. Has the return been received?",
        "Please send me a return label for the {product}.",
        "Is the {product} still within the return window? I bought it in {month}.",
        "I received the wrong item instead of the {product} and want to return it.",
        "My return for order #{order} was rejected. Why?",
        "The {product} stopped working after a week; I'd like to return it under warranty rather than troubleshoot.",
        "Do I have to pay for return shipping on the {product}?",
    ],
    "feedback": [
        "Just wanted to say the {product} is fantastic. Great job!",
        "Your support agent {name} was really helpful yesterday. Please pass on my thanks.",
        "Suggestion: please offer the {product} in more colours.",
        "The packaging for the {product} uses too much plastic. Please consider paper.",
        "I love the new website design, it's much easier to find things.",
        "It would be great if the {product} came with a longer cable.",
        "Delivery was quick and the {product} works perfectly. Five stars.",
        "Your checkout page is confusing; a clearer summary would help customers.",
        "I've bought from you for years and the quality of the {product} keeps getting better.",
        "Feature request: let me save several delivery addresses.",
    ],
}
COUNTRIES = ["Canada", "Germany", "Japan", "Brazil", "Kenya", "Norway", "India", "Australia"]
MONTHS = ["January", "March", "May", "July", "September", "November"]


def fill(template: str, rng: random.Random) -> str:
    return template.format(
        order=rng.randint(100000, 999999),
        order_short=rng.randint(10, 99),
        amount=f"{rng.randint(5, 480)}.{rng.randint(0, 99):02d}",
        month=rng.choice(MONTHS),
        product=rng.choice(PRODUCTS),
        days=rng.randint(2, 30),
        country=rng.choice(COUNTRIES),
        name=rng.choice(NAMES),
    )


def message(label: str, rng: random.Random) -> str:
    parts = [fill(rng.choice(OPENERS), rng), fill(rng.choice(TEMPLATES[label]), rng), fill(rng.choice(CLOSERS), rng)]
    return " ".join(p for p in parts if p)


def main() -> None:
    rng = random.Random(SEED)
    rows, seen = [], set()
    for label in TEMPLATES:
        while sum(r["label"] == label for r in rows) < PER_LABEL:
            text = message(label, rng)
            if text not in seen:
                seen.add(text)
                rows.append({"id": f"t{len(rows):04d}", "message": text, "label": label})
    rng.shuffle(rows)
    out = Path(__file__).with_name("data.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
