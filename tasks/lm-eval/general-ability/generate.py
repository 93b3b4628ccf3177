"""Generate the general-ability items: everyday facts, word knowledge and small arithmetic.

Deterministic from the seed: `python generate.py` rewrites items.jsonl byte for byte. The facts are
written out below by this project (no copied dataset); each item has four choices, one correct, and
the wrong choices come from the same category so that surface form gives nothing away.
"""

import json
import random
from pathlib import Path

SEED = 7
HERE = Path(__file__).resolve().parent

CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Germany": "Berlin",
    "Egypt": "Cairo",
    "Russia": "Moscow",
    "China": "Beijing",
    "the United Kingdom": "London",
    "Greece": "Athens",
    "Portugal": "Lisbon",
    "Ireland": "Dublin",
    "Austria": "Vienna",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Kenya": "Nairobi",
    "Argentina": "Buenos Aires",
    "Peru": "Lima",
    "Thailand": "Bangkok",
    "South Korea": "Seoul",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "India": "New Delhi",
    "Mexico": "Mexico City",
    "Poland": "Warsaw",
}
FACTS = [  # (question, answer, three wrong answers)
    ("How many legs does a spider have?", "eight", ["six", "four", "ten"]),
    ("How many days are there in a week?", "seven", ["five", "six", "ten"]),
    ("How many months are there in a year?", "twelve", ["ten", "eleven", "fourteen"]),
    ("What colour is the sky on a clear day?", "blue", ["green", "red", "brown"]),
    ("Which planet do we live on?", "Earth", ["Mars", "Venus", "Jupiter"]),
    ("What is the largest planet in the solar system?", "Jupiter", ["Mercury", "Mars", "Earth"]),
    ("Which star is at the centre of the solar system?", "the Sun", ["the Moon", "Polaris", "Sirius"]),
    ("What do bees make?", "honey", ["milk", "silk", "wool"]),
    ("What is frozen water called?", "ice", ["steam", "sand", "glass"]),
    ("At what temperature in degrees Celsius does water freeze?", "0", ["50", "100", "-40"]),
    ("At what temperature in degrees Celsius does water boil at sea level?", "100", ["0", "50", "212"]),
    ("Which gas do plants take in from the air to make food?", "carbon dioxide", ["helium", "neon", "argon"]),
    ("Which gas do humans need to breathe to stay alive?", "oxygen", ["helium", "neon", "chlorine"]),
    ("What is the chemical symbol for water?", "H2O", ["CO2", "NaCl", "O3"]),
    ("Which animal is known as the king of the jungle?", "the lion", ["the mouse", "the rabbit", "the sheep"]),
    (
        "Which is the largest ocean on Earth?",
        "the Pacific Ocean",
        ["the Arctic Ocean", "the Indian Ocean", "the Southern Ocean"],
    ),
    ("How many hours are there in a day?", "24", ["12", "30", "60"]),
    ("How many minutes are there in an hour?", "60", ["24", "100", "30"]),
    ("Which organ pumps blood around the body?", "the heart", ["the lungs", "the stomach", "the skin"]),
    ("What do you call a baby cat?", "a kitten", ["a puppy", "a calf", "a foal"]),
    ("What do you call a baby dog?", "a puppy", ["a kitten", "a lamb", "a chick"]),
    ("Which season comes after winter?", "spring", ["autumn", "summer", "winter"]),
    ("Which fruit is yellow and curved?", "a banana", ["a cherry", "a grape", "a plum"]),
    ("What instrument has black and white keys?", "a piano", ["a drum", "a flute", "a trumpet"]),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare", ["Charles Dickens", "Jane Austen", "Mark Twain"]),
    ("Which continent is Brazil in?", "South America", ["Europe", "Asia", "Africa"]),
    ("Which continent is Kenya in?", "Africa", ["Europe", "South America", "Australia"]),
    ("What is the opposite of hot?", "cold", ["warm", "loud", "tall"]),
    ("What is the opposite of up?", "down", ["left", "over", "near"]),
    ("What is the opposite of day?", "night", ["morning", "noon", "week"]),
    ("What is the opposite of big?", "small", ["wide", "heavy", "long"]),
    ("Which shape has three sides?", "a triangle", ["a square", "a circle", "a hexagon"]),
    ("How many sides does a square have?", "four", ["three", "five", "six"]),
    ("What do cows drink?", "water", ["milk", "juice", "oil"]),
    ("Which metal is attracted to a magnet?", "iron", ["gold", "copper", "aluminium"]),
    ("What is the main language spoken in Spain?", "Spanish", ["German", "Japanese", "Swahili"]),
    ("What is the main language spoken in France?", "French", ["Portuguese", "Korean", "Dutch"]),
    ("Which tool is used to cut paper?", "scissors", ["a hammer", "a spoon", "a brush"]),
    ("What falls from clouds when it rains?", "water", ["sand", "leaves", "smoke"]),
    ("Which sense do you use your ears for?", "hearing", ["smell", "taste", "sight"]),
]


def arithmetic(rng: random.Random, n: int) -> list[tuple[str, str, list[str]]]:
    items = []
    for _ in range(n):
        op = rng.choice("+-x")
        a, b = rng.randint(2, 20), rng.randint(2, 12)
        if op == "-":
            a += b  # no negative answers
        value = {"+": a + b, "-": a - b, "x": a * b}[op]
        wrong = set()
        while len(wrong) < 3:
            guess = value + rng.choice([-10, -2, -1, 1, 2, 10])
            if guess >= 0 and guess != value:
                wrong.add(guess)
        items.append((f"What is {a} {'times' if op == 'x' else op} {b}?", str(value), sorted(map(str, wrong))))
    return items


def main() -> None:
    rng = random.Random(SEED)
    capitals = list(CAPITALS.items())
    items = (
        [
            (f"What is the capital of {country}?", city, rng.sample([c for _, c in capitals if c != city], 3))
            for country, city in capitals
        ]
        + FACTS
        + arithmetic(rng, 60)
    )
    rows = []
    for n, (question, answer, wrong) in enumerate(items):
        choices = [answer, *wrong]
        rng.shuffle(choices)
        rows.append({"id": n, "question": question, "choices": choices, "answer": choices.index(answer)})
    (HERE / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} items")


if __name__ == "__main__":
    main()
