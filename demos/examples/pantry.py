"""pantry :: a tiny kitchen-stock helper, in the house style.

Every public helper starts with `pantry_`, takes a Jar first, and its docstring reads
`name(args) -> result :: what it does`.
"""

JAR_LIMIT_GRAMS = 2500
LOW_MARK_GRAMS = 200


class Jar:
    """Jar(label, grams) -> Jar :: one labelled jar on the shelf."""

    def __init__(self, label, grams=0):
        self.label = label
        self.grams = grams

    def __repr__(self):
        return f"Jar({self.label!r}, {self.grams})"


def pantry_fill(jar, grams):
    """pantry_fill(jar, grams) -> Jar :: pour grams in, never past JAR_LIMIT_GRAMS."""
    jar.grams = min(jar.grams + grams, JAR_LIMIT_GRAMS)
    return jar


def pantry_scoop(jar, grams):
    """pantry_scoop(jar, grams) -> int :: take grams out, return what was really taken."""
    taken = min(grams, jar.grams)
    jar.grams -= taken
    return taken


def pantry_is_low(jar):
    """pantry_is_low(jar) -> bool :: True when the jar is below LOW_MARK_GRAMS."""
    return jar.grams < LOW_MARK_GRAMS


def pantry_shelf(*labels):
    """pantry_shelf(*labels) -> dict :: a shelf of empty jars, by label."""
    return {label: Jar(label) for label in labels}


def pantry_restock(shelf, grams):
    """pantry_restock(shelf, grams) -> list :: fill every low jar, return their labels."""
    refilled = []
    for label, jar in shelf.items():
        if pantry_is_low(jar):
            pantry_fill(jar, grams)
            refilled.append(label)
    return refilled


def pantry_report(shelf):
    """pantry_report(shelf) -> str :: one line per jar, low jars marked with '!'."""
    lines = []
    for label, jar in sorted(shelf.items()):
        mark = "!" if pantry_is_low(jar) else " "
        lines.append(f"{mark} {label:<10} {jar.grams:>5} g")
    return "\n".join(lines)


def pantry_bake(shelf, recipe):
    """pantry_bake(shelf, recipe) -> bool :: scoop every ingredient, or nothing if one is short."""
    for label, grams in recipe.items():
        if shelf[label].grams < grams:
            return False
    for label, grams in recipe.items():
        pantry_scoop(shelf[label], grams)
    return True


if __name__ == "__main__":
    shelf = pantry_shelf("flour", "sugar", "oats")
    pantry_fill(shelf["flour"], 1000)
    pantry_fill(shelf["sugar"], 150)
    pantry_bake(shelf, {"flour": 300, "sugar": 100})
    pantry_restock(shelf, 500)
    print(pantry_report(shelf))
