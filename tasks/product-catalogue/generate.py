"""Generate the product-catalogue task: questions whose answers live only in a bundled corpus.

Deterministic from the seed: `python tasks/product-catalogue/generate.py` rewrites corpus/, train.jsonl
and test.jsonl byte for byte. Every product is invented here (brand, model, specs), so no pretrained
model can know the answers; each product has one document in corpus/ that states them.

Train and test ask about the same facts with different phrasings (TRAIN_QUESTIONS vs TEST_QUESTIONS),
so a fine-tuned model must have learnt the fact, not the sentence.
"""

import json
import random
import shutil
from pathlib import Path

SEED = 2024
HERE = Path(__file__).resolve().parent
N_TEST = 120

BRANDS = [
    "Korvala",
    "Menditz",
    "Ostrafel",
    "Quillon",
    "Brevika",
    "Talvex",
    "Ruomi",
    "Zephra",
    "Halden",
    "Vistrel",
    "Pellmark",
    "Ondrey",
]
CATEGORIES = {  # category: (power range in W, weight range in kg, price range in $)
    "kettle": ((1500, 3000), (0.8, 1.6), (25, 140)),
    "blender": ((300, 1500), (1.2, 4.5), (40, 420)),
    "air purifier": ((20, 90), (2.5, 9.0), (80, 650)),
    "desk lamp": ((5, 25), (0.4, 2.2), (19, 180)),
    "coffee grinder": ((100, 400), (0.9, 3.8), (30, 390)),
    "robot vacuum": ((25, 70), (2.8, 4.9), (150, 900)),
    "space heater": ((800, 2400), (1.5, 6.0), (35, 260)),
    "toaster": ((700, 1800), (1.1, 3.2), (22, 210)),
}
COUNTRIES = [
    "Portugal",
    "Vietnam",
    "Poland",
    "Mexico",
    "Malaysia",
    "Turkey",
    "Slovenia",
    "Chile",
    "Estonia",
    "Morocco",
    "Taiwan",
    "Romania",
]
COLOURS = ["slate grey", "copper", "sage green", "matte black", "ivory", "cobalt blue", "sand", "burgundy"]
SELLING_POINTS = [
    "a quiet motor",
    "a touch control panel",
    "an auto-off timer",
    "a dishwasher-safe base",
    "a child lock",
    "a washable filter",
    "an app for scheduling",
    "a brushed steel body",
    "a travel lock",
    "a night mode",
]

ATTRIBUTES = ("price", "warranty", "weight", "power", "country")
TRAIN_QUESTIONS = {
    "price": "What is the price of the {product}?",
    "warranty": "How long is the warranty on the {product}?",
    "weight": "How much does the {product} weigh?",
    "power": "What is the power rating of the {product}?",
    "country": "Where is the {product} manufactured?",
}
TEST_QUESTIONS = {
    "price": "How much does the {product} cost?",
    "warranty": "For how many years is the {product} covered by its warranty?",
    "weight": "What is the weight of the {product}?",
    "power": "How many watts does the {product} draw?",
    "country": "In which country is the {product} made?",
}


def make_products(rng: random.Random) -> list[dict]:
    products, used = [], set()
    for category, (power, weight, price) in CATEGORIES.items():
        for _ in range(8):
            while True:
                brand, model = rng.choice(BRANDS), f"{rng.choice('ACDFHKLMPRSTVX')}{rng.randint(2, 99)}"
                if (brand, model) not in used:
                    used.add((brand, model))
                    break
            products.append(
                {
                    "id": f"{brand.lower()}-{model.lower()}-{category.replace(' ', '-')}",
                    "name": f"{brand} {model} {category}",
                    "brand": brand,
                    "category": category,
                    "price": f"${rng.randint(*price)}",
                    "warranty": years(rng.randint(1, 6)),
                    "weight": f"{rng.uniform(*weight):.1f} kg",
                    "power": f"{rng.randrange(power[0], power[1] + 1, 5)} W",
                    "country": rng.choice(COUNTRIES),
                    "colour": rng.choice(COLOURS),
                    "points": rng.sample(SELLING_POINTS, 2),
                }
            )
    return products


def years(n: int) -> str:
    return "1 year" if n == 1 else f"{n} years"


def document(p: dict) -> str:
    """One catalogue page: a prose paragraph, then the specification list."""
    return (
        f"# {p['name']}\n\n"
        f"The {p['name']} from {p['brand']} comes in {p['colour']} and features {p['points'][0]} and "
        f"{p['points'][1]}. It is built in {p['country']} and sells for {p['price']}.\n\n"
        f"Specifications of the {p['name']}:\n"
        f"- Price: {p['price']}\n- Power: {p['power']}\n- Weight: {p['weight']}\n"
        f"- Warranty: {p['warranty']}\n- Made in: {p['country']}\n"
    )


def question_rows(products: list[dict], templates: dict, facts: list[tuple[int, str]]) -> list[dict]:
    return [
        {
            "id": f"{products[i]['id']}-{attr}",
            "question": templates[attr].format(product=products[i]["name"]),
            "answer": products[i][attr],
            "doc": products[i]["id"],
        }
        for i, attr in facts
    ]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def main() -> None:
    rng = random.Random(SEED)
    products = make_products(rng)
    corpus = HERE / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir()
    for p in products:
        (corpus / f"{p['id']}.md").write_text(document(p))
    facts = [(i, attr) for i in range(len(products)) for attr in ATTRIBUTES]
    test_facts = sorted(rng.sample(facts, N_TEST))
    write_jsonl(HERE / "train.jsonl", question_rows(products, TRAIN_QUESTIONS, facts))
    write_jsonl(HERE / "test.jsonl", question_rows(products, TEST_QUESTIONS, test_facts))
    print(f"{len(products)} products, {len(facts)} train questions, {len(test_facts)} test questions")


if __name__ == "__main__":
    main()
