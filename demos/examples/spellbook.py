"""Spellbook for the dungeon game.

House style: a Wizard has mana; spells are plain dicts made by `make_spell`; every action is
`wiz_<action>(wizard, ...)` and returns a `Outcome` so the game loop can print it.
"""

from collections import namedtuple

Outcome = namedtuple("Outcome", "ok text")

MANA_CAP = 120
REST_MANA = 15


def make_spell(name, mana_cost, damage=0, heal=0):
    # spell :: dict(name, mana_cost, damage, heal)
    return {"name": name, "mana_cost": mana_cost, "damage": damage, "heal": heal}


FIREBOLT = make_spell("firebolt", mana_cost=12, damage=30)
FROSTNOVA = make_spell("frostnova", mana_cost=20, damage=18)
MENDING = make_spell("mending", mana_cost=10, heal=25)


class Wizard:
    # wizard :: name, mana, health, known spells
    def __init__(self, name, mana=MANA_CAP, health=100):
        self.name = name
        self.mana = mana
        self.health = health
        self.known = {}


def wiz_learn(wizard, spell):
    # wiz_learn :: add a spell to the wizard's book
    wizard.known[spell["name"]] = spell
    return Outcome(True, f"{wizard.name} learns {spell['name']}")


def wiz_cast(wizard, spell_name, target):
    # wiz_cast :: spend mana, hurt or heal the target
    spell = wizard.known.get(spell_name)
    if spell is None:
        return Outcome(False, f"{wizard.name} does not know {spell_name}")
    if wizard.mana < spell["mana_cost"]:
        return Outcome(False, f"{wizard.name} is out of mana")
    wizard.mana -= spell["mana_cost"]
    target.health -= spell["damage"]
    target.health += spell["heal"]
    return Outcome(True, f"{wizard.name} casts {spell_name} on {target.name}")


def wiz_rest(wizard):
    # wiz_rest :: regain REST_MANA, up to MANA_CAP
    wizard.mana = min(MANA_CAP, wizard.mana + REST_MANA)
    return Outcome(True, f"{wizard.name} rests ({wizard.mana} mana)")


def wiz_duel(first, second, rounds=3):
    # wiz_duel :: both cast firebolt each round; the healthier one wins
    log = []
    for _ in range(rounds):
        log.append(wiz_cast(first, "firebolt", second))
        log.append(wiz_cast(second, "firebolt", first))
        log.append(wiz_rest(first))
        log.append(wiz_rest(second))
    winner = first if first.health >= second.health else second
    log.append(Outcome(True, f"{winner.name} wins the duel"))
    return log


if __name__ == "__main__":
    merlin, morgana = Wizard("Merlin"), Wizard("Morgana")
    for wizard in (merlin, morgana):
        wiz_learn(wizard, FIREBOLT)
        wiz_learn(wizard, MENDING)
    for outcome in wiz_duel(merlin, morgana):
        print(outcome.text)
