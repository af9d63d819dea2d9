"""Writes the quick-start corpus (short stories and plain-fact paragraphs) and trains its BPE tokenizer.

Every sentence pattern and word list below was written for this project; the script only combines them.
Run from the repository root (it is deterministic, so the committed files are reproducible):

    python litgpt/data/corpus/make_corpus.py
"""

import json
import random
import re
from pathlib import Path
from typing import Callable, Dict, List

HERE = Path(__file__).parent
N_FILES = 8
STORIES_PER_FILE = 90
FACTS_PER_FILE = 40
VOCAB_SIZE = 2048

# ----------------------------------------------------------------------------------------------------------
# people and animals: (name, kind, she/he)
HEROES = [
    ("Lily", "girl", "f"), ("Tom", "boy", "m"), ("Mia", "girl", "f"), ("Ben", "boy", "m"), ("Anna", "girl", "f"),
    ("Sam", "boy", "m"), ("Lucy", "girl", "f"), ("Max", "boy", "m"), ("Emma", "girl", "f"), ("Leo", "boy", "m"),
    ("Rosa", "girl", "f"), ("Jack", "boy", "m"), ("Nora", "girl", "f"), ("Finn", "boy", "m"), ("Ella", "girl", "f"),
    ("Omar", "boy", "m"), ("Ruby", "girl", "f"), ("Noah", "boy", "m"), ("Maya", "girl", "f"), ("Theo", "boy", "m"),
    ("Pip", "mouse", "m"), ("Daisy", "cow", "f"), ("Bruno", "bear", "m"), ("Hazel", "rabbit", "f"),
    ("Ollie", "owl", "m"), ("Fern", "fox", "f"), ("Rex", "dog", "m"), ("Mittens", "cat", "f"),
    ("Sunny", "duck", "f"), ("Toby", "turtle", "m"), ("Bella", "bird", "f"), ("Gus", "goat", "m"),
]
FRIENDS = [
    ("Kim", "f"), ("Joe", "m"), ("Sara", "f"), ("Dan", "m"), ("Zoe", "f"), ("Tim", "m"), ("Ivy", "f"), ("Ali", "m"),
    ("a little bird", "f"), ("an old turtle", "m"), ("a friendly dog", "m"), ("a small squirrel", "f"),
]
ADJ_HERO = ["little", "happy", "curious", "brave", "kind", "shy", "clever", "busy", "gentle", "cheerful", "small"]
HOMES = [
    "in a small house near the woods", "in a big city by the river", "on a farm with many animals",
    "in a cozy house at the end of the street", "in a village by the sea", "in a tall tree in the forest",
    "in a little house on a green hill", "near a quiet lake", "in a busy town with a big market",
]
LOVES = [
    "play in the garden", "read books about the stars", "draw pictures of animals", "sing songs with mom",
    "run in the park", "help dad in the kitchen", "build towers with blocks", "look at the clouds",
    "collect pretty stones", "play with the ball", "swim in the lake", "dance to music", "plant flowers",
    "ride a red bike", "bake cookies with grandma", "watch the birds in the sky", "splash in puddles",
]
OBJECTS = [
    ("ball", ["red", "big", "bouncy", "shiny", "blue"]), ("kite", ["yellow", "long", "colorful", "old"]),
    ("box", ["small", "wooden", "heavy", "secret", "golden"]), ("key", ["tiny", "old", "silver", "rusty"]),
    ("hat", ["funny", "warm", "green", "tall"]), ("shell", ["pink", "pretty", "smooth", "tiny"]),
    ("book", ["old", "thick", "magic", "dusty"]), ("feather", ["soft", "white", "long", "bright"]),
    ("map", ["old", "torn", "strange", "big"]), ("toy boat", ["little", "blue", "wooden"]),
    ("stone", ["round", "shiny", "smooth", "heavy"]), ("flower", ["purple", "tiny", "beautiful", "wild"]),
    ("bell", ["small", "golden", "loud"]), ("umbrella", ["yellow", "big", "broken"]),
    ("teddy bear", ["soft", "brown", "old", "fluffy"]), ("apple", ["red", "big", "juicy", "green"]),
]
FIND_PLACES = [
    "under a big tree", "in the tall grass", "behind the old fence", "near the river", "on the beach",
    "at the bottom of the garden", "inside a hollow log", "next to the pond", "on the kitchen table",
    "under the bed", "in the sand", "by the garden gate", "in a pile of leaves", "on a high shelf",
]
GOALS = [
    ("climb the big hill", "the top of the hill", "saw the whole town below"),
    ("find the lost ball", "the bushes behind the house", "found the ball next to a sleeping cat"),
    ("bake a cake for mom", "the kitchen", "made a cake with strawberries on top"),
    ("cross the river", "the old wooden bridge", "reached the other side safely"),
    ("fly a kite", "the windy field", "watched the kite dance high in the sky"),
    ("visit grandma", "the little house across the field", "had warm soup and bread with grandma"),
    ("catch a fish", "the quiet lake", "caught a small silver fish and let it go"),
    ("build a sandcastle", "the sunny beach", "built a castle with four towers"),
    ("see the stars", "the roof of the house", "counted more stars than ever before"),
    ("win the race", "the park", "ran as fast as the wind"),
    ("grow a sunflower", "the garden", "watched the sunflower grow taller than the fence"),
    ("find a new friend", "the playground", "met a girl who liked the same games"),
]
TRIP_PROBLEMS = [
    "But then dark clouds came and it started to rain.",
    "But the path was long and {he} was very tired.",
    "But a strong wind blew and {he} could hardly walk.",
    "But the gate was locked and nobody was there.",
    "But on the way, {he} got lost in the woods.",
    "But a big dog barked and {he} felt scared.",
    "But {his} shoe broke and {he} had to stop.",
    "But it was getting dark and the sun went down.",
    "But it was much harder than {he} thought.",
]
THING_PROBLEMS = [
    "But {he} dropped the {noun} and it rolled away down the hill.",
    "But the wind blew the {noun} into a tall tree.",
    "But a big dog ran off with the {noun}.",
    "But the {noun} fell into the pond with a splash.",
    "But {friend} lived far away, on the other side of the river.",
    "But the {noun} was dirty and {he} did not know how to clean it.",
]
HELPS = [
    "{friend} came and said, \"Do not worry. I will help you.\"",
    "{friend} saw the problem and had a good idea.",
    "Just then, {friend} walked by and offered a hand.",
    "{He} took a deep breath and tried again, slowly and carefully.",
    "{He} remembered what mom always said: \"Never give up.\"",
    "{friend} showed {him} a better way to go.",
    "{He} asked {friend} for help, and together they worked hard.",
]
FEELINGS_BAD = ["sad", "scared", "worried", "upset", "tired", "lonely", "angry"]
FEELINGS_GOOD = ["happy", "proud", "glad", "excited", "thankful", "calm", "cheerful"]
ENDINGS = [
    "From that day on, {name} and {friend} were the best of friends.",
    "{name} smiled and went home with a happy heart.",
    "That night, {name} slept well and dreamed of new adventures.",
    "{name} learned that it is good to ask for help.",
    "{name} learned that being patient is important.",
    "{name} learned that sharing makes everyone happy.",
    "{name} learned that trying again is the best way to learn.",
    "Everyone clapped, and {name} felt very {good}.",
    "It was the best day ever.",
    "When {he} got home, {he} told mom all about the day.",
]
TRIP_SAYINGS = [
    "\"This is the best day ever!\" said {name}.",
    "\"Thank you for helping me,\" said {name}.",
    "\"I am not afraid anymore,\" said {name}.",
    "\"What a beautiful day,\" said {name}.",
    "\"We did it!\" shouted {name}.",
    "\"Can we do this again tomorrow?\" asked {name}.",
]
THING_SAYINGS = [
    "\"Look what I found!\" shouted {name}.",
    "\"What a pretty {noun}!\" said {name}.",
    "\"I wonder who lost this {noun},\" said {name}.",
    "\"Is this {noun} magic?\" asked {name}.",
]
WEATHER = [
    "The sun was shining and the birds were singing.", "It was a cold morning and the grass was white with frost.",
    "The wind was blowing and the leaves were falling.", "It was a warm summer day.",
    "Soft snow was falling on the roofs.", "The sky was blue and there was not a single cloud.",
    "It had rained all night, and the streets were wet.", "It was a quiet evening and the moon was rising.",
]
OPENINGS = [
    "Once upon a time, there was a {adj} {kind} named {name}.",
    "Once upon a time, {name} the {kind} lived {home}.",
    "There once was a {adj} {kind} called {name}, who lived {home}.",
    "{name} was a {adj} {kind} who lived {home}.",
    "Long ago, {home}, there lived a {adj} {kind} named {name}.",
    "One morning, a {adj} {kind} named {name} woke up early.",
]

# ----------------------------------------------------------------------------------------------------------
# plain facts, written for this corpus: topic -> sentences in a sensible order
FACTS: Dict[str, List[str]] = {
    "The fox": [
        "The fox is a small wild animal that lives in forests, fields and even in towns.",
        "Most foxes have red fur, a white chest and a long bushy tail.",
        "A fox hunts at night and sleeps during the day.",
        "Foxes eat mice, rabbits, birds, insects and berries.",
        "A mother fox keeps her young in a hole in the ground called a den.",
        "Foxes have very good hearing and can hear a mouse moving under the snow.",
    ],
    "The owl": [
        "The owl is a bird that is awake at night.",
        "Owls have large eyes that help them see in the dark.",
        "An owl can turn its head almost all the way around.",
        "Its soft feathers let it fly without making a sound.",
        "Owls eat mice, insects and small birds.",
        "Many people think the owl is a wise bird.",
    ],
    "The bee": [
        "The bee is a small insect with yellow and black stripes.",
        "Bees fly from flower to flower to collect sweet nectar.",
        "They carry pollen on their legs, and this helps plants grow seeds and fruit.",
        "Honey bees live together in a hive with one queen and many workers.",
        "The workers turn nectar into honey and store it for the winter.",
        "A bee can sting when it is afraid, so it is best to stay calm near bees.",
    ],
    "The whale": [
        "The whale is the largest animal that lives in the sea.",
        "Although it swims like a fish, a whale is a mammal and breathes air.",
        "Whales come up to the surface to breathe through a hole on the top of their heads.",
        "Some whales eat tiny animals called krill, and others eat fish.",
        "Whales can sing long songs that travel far through the water.",
        "A baby whale stays close to its mother for a long time.",
    ],
    "The elephant": [
        "The elephant is the largest animal that lives on land.",
        "Elephants have big ears, thick grey skin and a long nose called a trunk.",
        "An elephant uses its trunk to drink water, pick up food and greet its friends.",
        "Elephants eat grass, leaves, fruit and the bark of trees.",
        "They live in families led by the oldest female.",
        "Elephants have very good memories.",
    ],
    "The penguin": [
        "The penguin is a bird that cannot fly.",
        "Instead of flying, penguins swim very fast in cold water.",
        "Their black and white feathers keep them warm and dry.",
        "Penguins eat fish, squid and krill.",
        "Many penguins live near the South Pole, where it is very cold.",
        "A father penguin often keeps the egg warm on his feet.",
    ],
    "The frog": [
        "The frog is a small animal that lives both in water and on land.",
        "A frog begins its life as an egg and then becomes a tadpole.",
        "The tadpole has a tail and swims like a fish.",
        "Slowly it grows legs, loses its tail and becomes a frog.",
        "Frogs catch insects with their long sticky tongues.",
        "On warm nights, you can hear frogs singing near ponds.",
    ],
    "The horse": [
        "The horse is a strong animal with long legs and a flowing mane.",
        "People have ridden horses for thousands of years.",
        "Horses eat grass, hay and oats.",
        "A young horse is called a foal.",
        "Horses can sleep standing up.",
        "Farmers once used horses to pull carts and plows.",
    ],
    "The tree": [
        "A tree is a tall plant with a wooden trunk, branches and leaves.",
        "Trees take in water through their roots deep in the ground.",
        "Their green leaves use sunlight to make food for the tree.",
        "Trees give us shade, wood, fruit and clean air.",
        "Many birds and insects make their homes in trees.",
        "Some trees lose their leaves in autumn and grow new ones in spring.",
    ],
    "The sun": [
        "The sun is a star at the center of our solar system.",
        "It gives the earth light and warmth.",
        "Without the sun, plants could not grow and the earth would be cold and dark.",
        "The sun looks small because it is very far away, but it is much bigger than the earth.",
        "Every morning the sun rises in the east, and every evening it sets in the west.",
        "You should never look straight at the sun, because it can hurt your eyes.",
    ],
    "The moon": [
        "The moon moves around the earth once every month.",
        "It does not make its own light but shines with light from the sun.",
        "As the moon travels, we see different shapes, from a thin line to a full round circle.",
        "There is no air and no water to drink on the moon.",
        "People first walked on the moon many years ago.",
        "The moon helps to make the tides in the sea.",
    ],
    "Rain": [
        "Rain is water that falls from clouds in the sky.",
        "The sun warms water in seas, lakes and rivers, and the water rises into the air.",
        "High in the sky, the water forms clouds.",
        "When the drops in a cloud become heavy, they fall as rain.",
        "Rain gives plants and animals the water they need.",
        "After rain, you can sometimes see a rainbow.",
    ],
    "Snow": [
        "Snow falls when the air is very cold.",
        "Each snowflake is made of tiny pieces of ice.",
        "No two snowflakes look exactly the same.",
        "Children like to build snowmen and throw snowballs.",
        "Snow covers the ground like a white blanket.",
        "When the weather gets warm, the snow melts into water.",
    ],
    "Autumn": [
        "Autumn is the season between summer and winter.",
        "In autumn, the days get shorter and the nights get longer.",
        "The leaves on many trees turn red, orange and yellow and fall to the ground.",
        "Farmers gather apples, pumpkins and corn.",
        "Squirrels hide nuts so they will have food in the winter.",
        "Many birds fly to warmer places before the cold comes.",
    ],
    "Spring": [
        "Spring is the season that comes after winter.",
        "The weather grows warmer and the snow melts.",
        "Flowers open and trees grow new green leaves.",
        "Birds build nests and lay eggs.",
        "Many baby animals are born in the spring.",
        "People like to spend more time outside when spring arrives.",
    ],
    "The sea": [
        "The sea is a very large body of salt water.",
        "Seas and oceans cover most of the earth.",
        "Fish, crabs, seals, dolphins and whales live in the sea.",
        "The water moves in waves and rises and falls with the tides.",
        "Ships carry people and goods across the sea.",
        "On a hot day, many families go to the beach to swim and play in the sand.",
    ],
    "Mountains": [
        "A mountain is land that rises high above the ground around it.",
        "The tops of tall mountains are often covered with snow, even in summer.",
        "It gets colder the higher you climb.",
        "Goats, eagles and bears can live in the mountains.",
        "Rivers often begin as small streams high in the mountains.",
        "Climbing a mountain takes strength, care and good boots.",
    ],
    "The river": [
        "A river is a stream of fresh water that flows across the land.",
        "Most rivers begin in hills or mountains and flow down to the sea.",
        "Small streams join together to make a river bigger.",
        "Fish, ducks, frogs and otters live in and near rivers.",
        "Long ago, people built towns beside rivers so they would have water.",
        "Bridges help people cross from one side of a river to the other.",
    ],
    "The farmer": [
        "A farmer grows food and takes care of animals.",
        "Farmers plant seeds in the spring and gather the crops in the autumn.",
        "Some farmers keep cows for milk and hens for eggs.",
        "A farmer gets up very early, before the sun rises.",
        "Farmers need good weather, with enough sun and rain.",
        "Much of the food we eat comes from farms.",
    ],
    "The baker": [
        "A baker makes bread, cakes and cookies.",
        "Bakers start work in the middle of the night so the bread is fresh in the morning.",
        "Bread is made from flour, water, salt and yeast.",
        "The yeast makes the dough rise and become soft.",
        "The baker shapes the dough and bakes it in a hot oven.",
        "The smell of fresh bread fills the whole street.",
    ],
    "The doctor": [
        "A doctor helps people who are sick or hurt.",
        "Doctors listen to your heart and look in your ears and throat.",
        "They tell you how to get well and sometimes give you medicine.",
        "Doctors study for many years to learn about the human body.",
        "Some doctors work in hospitals and others in small offices.",
        "It is good to visit the doctor even when you feel well.",
    ],
    "The library": [
        "A library is a place full of books that people can borrow.",
        "You can read stories, learn facts and find maps in a library.",
        "The person who works there is called a librarian.",
        "In a library, people speak softly so others can read.",
        "After you read a book, you bring it back for someone else.",
        "Many libraries also have computers, music and films.",
    ],
    "Bread": [
        "Bread is one of the oldest foods that people make.",
        "It is baked from flour, which is made by grinding grains of wheat.",
        "There are many kinds of bread, such as white bread, brown bread and flat bread.",
        "People eat bread with butter, cheese, soup or jam.",
        "Fresh bread is soft inside and crisp outside.",
    ],
    "Water": [
        "All living things need water.",
        "Water can be a liquid, a solid called ice, or a gas called steam.",
        "When water gets very cold it freezes, and when it gets very hot it boils.",
        "Most of the water on earth is salty water in the seas.",
        "We drink fresh water from rivers, lakes and wells.",
        "It is important not to waste water.",
    ],
    "The bicycle": [
        "A bicycle is a machine with two wheels that you move with your legs.",
        "You push the pedals, and a chain turns the back wheel.",
        "You steer with the handlebars and stop with the brakes.",
        "Riding a bicycle is good exercise and does not make the air dirty.",
        "When you ride, you should wear a helmet to keep your head safe.",
    ],
    "The train": [
        "A train is a row of cars that moves on a railway track.",
        "The engine at the front pulls the cars behind it.",
        "Trains carry people from one city to another.",
        "Some trains carry coal, wood or food instead of people.",
        "Long ago, trains were pulled by steam engines that puffed clouds of smoke.",
        "Today many trains run on electricity and go very fast.",
    ],
    "Sleep": [
        "Every person and animal needs sleep.",
        "While we sleep, our bodies rest and grow.",
        "Children need more sleep than grown ups.",
        "When we sleep, we often have dreams.",
        "Going to bed at the same time each night helps us sleep well.",
        "After a good sleep, we wake up with new energy.",
    ],
    "Friendship": [
        "A friend is someone who cares about you and likes to spend time with you.",
        "Good friends share, listen and help each other.",
        "Friends can laugh together and also be sad together.",
        "Sometimes friends disagree, but they can talk and make up.",
        "Being kind is the best way to make a new friend.",
    ],
    "The garden": [
        "A garden is a piece of land where people grow flowers, fruit or vegetables.",
        "Plants in a garden need sun, water and good soil.",
        "Gardeners pull out weeds so the other plants have room to grow.",
        "Worms in the soil help keep it healthy.",
        "Bees and butterflies visit the flowers in a garden.",
        "Growing your own food can be fun and tasty.",
    ],
    "Music": [
        "Music is made of sounds that are put together in a pleasing way.",
        "People make music by singing or by playing instruments.",
        "The piano, the violin, the drum and the flute are all instruments.",
        "Music can make us feel happy, calm or sad.",
        "In many places, people sing and dance together at festivals.",
    ],
}
FACT_INTROS = ["", "", "Here are some facts about {topic}. ", "Let us learn about {topic}. "]


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def story(rng: random.Random) -> str:
    name, kind, sex = rng.choice(HEROES)
    friend, _ = rng.choice(FRIENDS)
    pron = {"he": "he", "him": "him", "his": "his"} if sex == "m" else {"he": "she", "him": "her", "his": "her"}
    noun, adjs = rng.choice(OBJECTS)
    slots = {
        "noun": noun, "name": name, "kind": kind, "adj": rng.choice(ADJ_HERO), "home": rng.choice(HOMES), "friend": friend,
        "good": rng.choice(FEELINGS_GOOD), **pron, "He": pron["he"].capitalize(), "His": pron["his"].capitalize(),
    }
    fill: Callable[[str], str] = lambda s: capitalize_first(s.format(**slots))
    lines = [fill(rng.choice(OPENINGS))]
    lines.append(fill(f"{{He}} loved to {rng.choice(LOVES)}."))
    if rng.random() < 0.5:
        lines.append(rng.choice(WEATHER))
    if rng.random() < 0.5:
        thing = f"{rng.choice(adjs)} {noun}"
        lines.append(fill(f"One day, {{he}} found {article(thing)} {rng.choice(FIND_PLACES)}."))
        lines.append(fill(rng.choice(THING_SAYINGS)))
        lines.append(fill(f"{{He}} wanted to show the {noun} to {friend}."))
        lines += trouble(rng, fill, THING_PROBLEMS, ".")
        lines.append(fill(f"In the end, {{name}} and {friend} looked at the {noun} together."))
    else:
        goal, place, success = rng.choice(GOALS)
        lines.append(fill(f"One day, {{name}} wanted to {goal}."))
        lines.append(fill(f"{{He}} went to {place} with {friend}."))
        lines += trouble(rng, fill, TRIP_PROBLEMS, " and sat down.")
        lines.append(fill(f"At last, {{name}} {success}."))
        lines.append(fill(rng.choice(TRIP_SAYINGS)))
    lines.append(fill(rng.choice(ENDINGS)))
    return " ".join(lines)


def trouble(rng: random.Random, fill: Callable[[str], str], problems: List[str], after_feeling: str) -> List[str]:
    """The middle of every story: a problem, how the hero feels about it, and the help that comes."""
    problem = fill(rng.choice(problems))
    return [problem, fill(f"{{name}} felt {rng.choice(FEELINGS_BAD)}{after_feeling}"), fill(rng.choice(HELPS))]


def facts(rng: random.Random) -> str:
    topic = rng.choice(sorted(FACTS))
    sentences = FACTS[topic]
    keep = sorted(rng.sample(range(len(sentences)), k=rng.randint(3, len(sentences))))
    intro = rng.choice(FACT_INTROS).format(topic=topic[0].lower() + topic[1:])
    return intro + " ".join(sentences[i] for i in keep)


def capitalize_first(text: str) -> str:
    return re.sub(r"^(\W*)(\w)", lambda m: m.group(1) + m.group(2).upper(), text)


def write_corpus() -> List[Path]:
    rng = random.Random(1234)
    paths = []
    for i in range(N_FILES):
        paragraphs = [story(rng) for _ in range(STORIES_PER_FILE)] + [facts(rng) for _ in range(FACTS_PER_FILE)]
        rng.shuffle(paragraphs)
        path = HERE / f"corpus_{i:02d}.txt"
        path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def train_tokenizer(paths: List[Path]) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any text encodes, byte by byte at worst
        show_progress=False,
    )
    tokenizer.train([str(p) for p in paths], trainer)
    tokenizer.save(str(HERE / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "add_bos_token": False,
        "model_max_length": 256,
    }
    (HERE / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    train_tokenizer(write_corpus())
