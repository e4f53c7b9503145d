"""The toy world's oracle probe: Hard-Only vs the world's true stepping stones vs nothing, same student budget.

    python benchmarks/toy_probe.py                       # the default world (built or from the cache), seeds 0,1,2
    python benchmarks/toy_probe.py --world DIR --seeds 0 --steps 18 inner.lr=3e-3 --out probe.json

Every trained arm gets `--steps` RLOO steps of the tiny recipe's inner loop (inner.batch_size questions x
inner.group_size rollouts, inner.lr, ...; overrides as in `soarlite run`). Prints a markdown table (pass@1, pass@32
with a 95% bootstrap interval over hard test problems, per seed) and the paired differences; --out writes the JSON.
See soarlite/probe.py and docs/toy-world.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("overrides", nargs="*", help="recipe overrides for the inner loop, e.g. inner.lr=3e-3")
    ap.add_argument("--world", type=Path, help="a built world folder (default: the default world, built if needed)")
    ap.add_argument("--small", action="store_true", help="the test suite's small world")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override one world setting")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=18, help="RLOO steps per trained arm (default: three inner loops)")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--arms", default="none,hard_only,stones")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    a = ap.parse_args(argv)

    from soarlite import toy
    from soarlite.probe import run_probe

    world = a.world
    if world is None:
        settings = dict(toy.SMALL_SETTINGS if a.small else toy.DEFAULT_SETTINGS)
        for kv in a.set:
            key, _, val = kv.partition("=")
            settings[key] = json.loads(val)
        world = toy.ensure_built(settings, seed=a.world_seed)
    result = run_probe(world, seeds=[int(s) for s in a.seeds.split(",")], steps=a.steps, samples=a.samples,
                       arms=a.arms.split(","), overrides=a.overrides)
    print(f"\nworld {world} (version {result['world_version']}), {result['steps']} steps x {result['batch_size']} "
          f"questions x {result['group_size']} rollouts, {result.get('optimizer', 'adamw')} lr {result['lr']}, "
          f"{result['seconds']}s\n")
    print(result["table"])
    if a.out:
        a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
