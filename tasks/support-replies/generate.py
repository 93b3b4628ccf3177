"""Generate the support-replies task: customer-support messages, each with a good and a bad reply.

Deterministic from the seed: `python tasks/support-replies/generate.py` rewrites data.jsonl byte for byte.
Every message and reply is assembled from the templates below (no copied dataset). Each message
template has its own chosen-reply template, filled with the same order number, product and amount
as the message, so the chosen reply names the team and a concrete next step; the rejected reply is
one of a few generic answers that name neither.
"""

import json
import random
from pathlib import Path

SEED = 4321
PER_TEAM = 60

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
CLOSERS = [
    "Thanks.",
    "Thank you!",
    "Please help.",
    "Regards, {customer}",
    "Cheers, {customer}",
    "",
    "",
    "Appreciate it.",
]
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emre", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kofi", "Lena"]
COUNTRIES = ["Canada", "Germany", "Japan", "Brazil", "Kenya", "Norway", "India", "Australia"]
MONTHS = ["January", "March", "May", "July", "September", "November"]

# (customer message, chosen reply): the reply reuses the message's slots and names its team.
TEMPLATES = {
    "billing": [
        (
            "I was charged twice for order #{order}. Please refund the duplicate payment of ${amount}.",
            "Our billing team will refund the duplicate ${amount} charge on order #{order} within 3 business days and email you when it's done.",
        ),
        (
            "My invoice for {month} shows ${amount} but I expected a lower amount. Can you explain the charge?",
            "Our billing team will review your {month} invoice of ${amount} and email you an itemised breakdown within 2 business days.",
        ),
        (
            "Your site took ${amount} from my card but the payment page showed an error.",
            "Our billing team will match the ${amount} payment to an order and refund it within 3 business days if none was placed.",
        ),
        (
            "How do I update the credit card you bill each month? The old one expired.",
            "Our billing team will email you a secure link to update your card today; your next payment will use the new one.",
        ),
        (
            "I need a VAT invoice for order #{order} for my company's accounts.",
            "Our billing team will email a VAT invoice for order #{order} to the address on your account within 1 business day.",
        ),
        (
            "The discount code was not applied and I paid full price (${amount}) for the {product}.",
            "Our billing team will apply the discount to your ${amount} {product} purchase and refund the difference within 3 business days.",
        ),
        (
            "Why is there a ${amount} fee on my statement from your store? I don't recognise it.",
            "Our billing team will trace the ${amount} charge and email you what it was for within 2 business days.",
        ),
        (
            "Can I pay for order #{order} in instalments instead of all at once?",
            "Our billing team will email you the instalment plans for order #{order} today; reply to pick one.",
        ),
        (
            "I cancelled my subscription in {month} but I was still billed ${amount}.",
            "Our billing team will refund the ${amount} billed after your {month} cancellation within 3 business days.",
        ),
        (
            "The {product} arrived fine, but the receipt charges me tax twice.",
            "Our billing team will correct the double tax on your {product} receipt and refund the extra within 3 business days.",
        ),
    ],
    "shipping": [
        (
            "My order #{order} still hasn't arrived and the tracking has not updated for {days} days.",
            "Our shipping team will open a trace with the courier for order #{order} today and email you an update within 2 business days.",
        ),
        (
            "The courier says the {product} was delivered but nothing is at my door.",
            "Our shipping team will file a missing-parcel claim for your {product} with the courier today and email you within 2 business days.",
        ),
        (
            "Can I change the delivery address for order #{order}? I moved last week.",
            "Our shipping team will update the address on order #{order} if you reply with the new one before it ships.",
        ),
        (
            "How long does shipping to {country} usually take?",
            "Our shipping team will email you the delivery times and costs for {country} within 1 business day.",
        ),
        (
            "The tracking link for order #{order} gives an error page.",
            "Our shipping team will email you a working tracking link for order #{order} within 1 business day.",
        ),
        (
            "Is express delivery available for the {product}? I need it before {month} ends.",
            "Our shipping team will check express delivery for the {product} and email you a delivery date within 1 business day.",
        ),
        (
            "The parcel with my {product} was left in the rain and the box is soaked, but the item looks okay. Can you use a better drop-off next time?",
            "Our shipping team will add a safe-place note to your account so couriers stop leaving parcels like your {product} outside.",
        ),
        (
            "Order #{order} was split into two parcels and only one came. Where is the second?",
            "Our shipping team will trace the second parcel of order #{order} and email you its tracking number within 1 business day.",
        ),
        (
            "Do you ship to PO boxes? I live in {country}.",
            "Our shipping team will confirm by email within 1 business day whether we can deliver to your PO box in {country}.",
        ),
        (
            "My package has been stuck at customs in {country} for {days} days.",
            "Our shipping team will contact customs in {country} about your package today and email you an update within 2 business days.",
        ),
    ],
    "technical": [
        (
            "The {product} will not turn on even after charging it overnight.",
            "Our technical team will email you a reset procedure for the {product} today and arrange a replacement if it still won't turn on.",
        ),
        (
            "My {product} keeps disconnecting from wifi every few minutes.",
            "Our technical team will email you steps to stop the {product} dropping wifi within 1 business day; please reply with your router model.",
        ),
        (
            "The app crashes whenever I try to pair the {product}.",
            "Our technical team will review the app crash and email you a pairing fix for the {product} within 2 business days.",
        ),
        (
            "After the latest firmware update the {product} is very slow.",
            "Our technical team will email you instructions to roll the {product} back to the previous firmware today.",
        ),
        (
            "The {product} makes a loud buzzing noise when it runs. Is this normal?",
            "Our technical team will check the buzzing {product} if you reply with a short video; they'll answer within 1 business day.",
        ),
        (
            "How do I reset the {product} to factory settings? The manual doesn't say.",
            "Our technical team will email you the factory reset steps for the {product} today.",
        ),
        (
            "The display on my {product} flickers and shows random lines.",
            "Our technical team will arrange a repair for the flickering {product} display and email you a prepaid label within 2 business days.",
        ),
        (
            "The {product} gets very hot after {days} minutes of use.",
            "Our technical team will email you a prepaid label today to test the overheating {product}; please stop using it until then.",
        ),
        (
            "I paid for the {product} last month and now the battery lasts only an hour. How can I fix the battery drain?",
            "Our technical team will email you battery calibration steps for the {product} today and replace the battery if they don't help.",
        ),
        (
            "Bluetooth pairing fails with error code E{code} on my {product}.",
            "Our technical team will email you the fix for error E{code} on the {product} within 1 business day.",
        ),
    ],
    "account": [
        (
            "I can't log in to my account; the password reset email never arrives.",
            "Our account team will send a new password reset link within the hour; check your spam folder if it doesn't arrive.",
        ),
        (
            "Please change the email address on my account to a new one.",
            "Our account team will email you a verification link today; the new address takes effect once you confirm it.",
        ),
        (
            "My account was locked after too many login attempts. Can you unlock it?",
            "Our account team will unlock your account within 1 hour and email you when you can sign in again.",
        ),
        (
            "How do I delete my account and all my personal data?",
            "Our account team will delete your account and personal data within 30 days and email you a confirmation.",
        ),
        (
            "I think someone else logged into my account from {country}.",
            "Our account team will lock your account now and email you a secure link to reset your password and review the {country} sign-in.",
        ),
        (
            "Two-factor authentication codes are not accepted when I sign in.",
            "Our account team will reset your two-factor authentication within 1 business day and email you setup instructions.",
        ),
        (
            "Can I merge my two accounts? I have order history in both.",
            "Our account team will merge your two accounts and their order history within 2 business days and email you when it's done.",
        ),
        (
            "I want to change the username on my profile.",
            "Our account team will change your username within 1 business day once you reply with the name you'd like.",
        ),
        (
            "The site says my email is already registered, but I never made an account.",
            "Our account team will investigate the registration on your email and email you within 1 business day so you can claim it.",
        ),
        (
            "How do I turn off marketing emails in my account settings?",
            "Our account team will turn off marketing emails for your account today; they can take 48 hours to stop.",
        ),
    ],
    "returns": [
        (
            "I'd like to return the {product}; it doesn't fit my needs. What is the process?",
            "Our returns team will email you a prepaid return label for the {product} today; your refund follows once it arrives.",
        ),
        (
            "The {product} arrived damaged. I want to send it back for a replacement.",
            "Our returns team will ship a replacement {product} and email you a prepaid label for the damaged one within 2 business days.",
        ),
        (
            "Can I exchange the {product} for a different colour?",
            "Our returns team will email you an exchange label for the {product} today; reply with the colour you want.",
        ),
        (
            "I sent back order #{order} {days} days ago. Has the return been received?",
            "Our returns team will check the return of order #{order} today and email you its status within 1 business day.",
        ),
        (
            "Please send me a return label for the {product}.",
            "Our returns team will email you a prepaid return label for the {product} within 1 business day.",
        ),
        (
            "Is the {product} still within the return window? I bought it in {month}.",
            "Our returns team will check your {month} purchase of the {product} against the return window and email you by tomorrow.",
        ),
        (
            "I received the wrong item instead of the {product} and want to return it.",
            "Our returns team will ship you the {product} and email a prepaid label for the wrong item within 2 business days.",
        ),
        (
            "My return for order #{order} was rejected. Why?",
            "Our returns team will review the rejected return on order #{order} and email you the reason within 2 business days.",
        ),
        (
            "The {product} stopped working after a week; I'd like to return it under warranty rather than troubleshoot.",
            "Our returns team will open a warranty return for the {product} and email you a prepaid label today.",
        ),
        (
            "Do I have to pay for return shipping on the {product}?",
            "Our returns team will email you a free prepaid return label for the {product} today; return shipping costs you nothing.",
        ),
    ],
    "feedback": [
        (
            "Just wanted to say the {product} is fantastic. Great job!",
            "Our feedback team will pass your praise for the {product} on to its designers this week.",
        ),
        (
            "Your support agent {name} was really helpful yesterday. Please pass on my thanks.",
            "Our feedback team will pass your thanks on to {name} today and add it to their review.",
        ),
        (
            "Suggestion: please offer the {product} in more colours.",
            "Our feedback team will add your request for more {product} colours to this quarter's product review.",
        ),
        (
            "The packaging for the {product} uses too much plastic. Please consider paper.",
            "Our feedback team will forward your packaging comment on the {product} to our sustainability group this week.",
        ),
        (
            "I love the new website design, it's much easier to find things.",
            "Our feedback team will share your comment on the new website with the designers this week.",
        ),
        (
            "It would be great if the {product} came with a longer cable.",
            "Our feedback team will log your request for a longer {product} cable for the next product review.",
        ),
        (
            "Delivery was quick and the {product} works perfectly. Five stars.",
            "Our feedback team will share your five-star review of the {product} with the warehouse and product staff this week.",
        ),
        (
            "Your checkout page is confusing; a clearer summary would help customers.",
            "Our feedback team will send your checkout suggestion to the web designers for this month's review.",
        ),
        (
            "I've bought from you for years and the quality of the {product} keeps getting better.",
            "Our feedback team will share your comments on the {product} with its makers this week.",
        ),
        (
            "Feature request: let me save several delivery addresses.",
            "Our feedback team will add saved delivery addresses to the feature requests the web designers review each month.",
        ),
    ],
}
# Bad replies: polite but generic; none names a team or a concrete next step.
REJECTED = [
    "Thanks for reaching out. We're looking into it and will get back to you if needed.",
    "We appreciate your message. Someone will review it in due course.",
    "Sorry for any inconvenience. We'll see what we can do.",
    "Thank you for contacting us. Your request has been noted.",
    "We understand your concern and will try to help where possible.",
    "Thanks for your patience. We may follow up at some point.",
    "We have received your message and it will be passed on as appropriate.",
    "Sorry to hear that. Please bear with us while we look into things.",
    "Thank you for getting in touch. We'll do our best to sort this out eventually.",
    "We value your message. Someone may be in touch if there is an update.",
]


def slots(rng: random.Random) -> dict:
    """One draw of every slot, shared by the message and its chosen reply."""
    return dict(
        order=rng.randint(100000, 999999),
        code=rng.randint(10, 99),
        amount=f"{rng.randint(5, 480)}.{rng.randint(0, 99):02d}",
        month=rng.choice(MONTHS),
        product=rng.choice(PRODUCTS),
        days=rng.randint(2, 30),
        country=rng.choice(COUNTRIES),
        name=rng.choice(NAMES),
        customer=rng.choice(NAMES),
    )


def example(team: str, rng: random.Random) -> tuple[str, str, str]:
    """(message, chosen, rejected) for one customer of `team`."""
    values = slots(rng)
    ask, reply = rng.choice(TEMPLATES[team])
    parts = [rng.choice(OPENERS), ask, rng.choice(CLOSERS)]
    message = " ".join(p.format(**values) for p in parts if p)
    return message, reply.format(**values), rng.choice(REJECTED)


def main() -> None:
    rng = random.Random(SEED)
    rows, seen = [], set()
    for team in TEMPLATES:
        while sum(r["team"] == team for r in rows) < PER_TEAM:
            message, chosen, rejected = example(team, rng)
            if message not in seen:
                seen.add(message)
                rows.append(
                    {
                        "id": f"s{len(rows):04d}",
                        "message": message,
                        "team": team,
                        "chosen": chosen,
                        "rejected": rejected,
                    }
                )
    rng.shuffle(rows)
    out = Path(__file__).with_name("data.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
