"""Data commands: ``spert validate``, ``spert datasets download`` and ``spert convert``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spert.data import check_dataset, read_types
from spert.data.download import DATASETS, DEFAULT_BASE_URL, ENV_VAR, fetch
from spert.data.dygie import convert_dygie


def cmd_validate(args: argparse.Namespace) -> None:
    types = read_types(args.types)
    total = 0
    for path in args.data:
        sentences, problems = check_dataset(path, types)
        for problem in problems:
            print(problem)
        total += len(problems)
        n_ent = sum(len(s.entities) for s in sentences)
        n_rel = sum(len(s.relations) for s in sentences)
        print(
            f"{path}: {len(sentences)} valid sentences, {n_ent} entities, {n_rel} relations, "
            f"{len(problems)} problem(s)"
        )
    if total:
        raise SystemExit(1)


def cmd_download(args: argparse.Namespace) -> None:
    """``spert datasets download NAME --dir DIR [--base-url URL]``."""
    result = fetch(args.name, Path(args.dir), args.base_url, progress=not args.quiet)
    where = Path(args.dir) / args.name
    if result.downloaded:
        print(
            f"{args.name}: downloaded {len(result.downloaded)} file(s), "
            f"{len(result.present)} already present, in {where}"
        )
    else:
        print(f"{args.name}: all {len(result.paths)} files already present and valid in {where}")


def cmd_convert_dygie(args: argparse.Namespace) -> None:
    types = read_types(args.types) if args.types else None
    sentences = convert_dygie(args.input, args.out, types, args.doc_ids)
    n_ent = sum(len(s.entities) for s in sentences)
    n_rel = sum(len(s.relations) for s in sentences)
    print(f"{len(sentences)} sentences, {n_ent} entities, {n_rel} relations -> {args.out}")


def register(sub: Any) -> None:
    """Add ``validate``, ``datasets`` and ``convert``."""
    _add_validate(sub)
    _add_datasets(sub)
    _add_convert(sub)


def _add_validate(sub: Any) -> None:
    p = sub.add_parser("validate", help="list every problem in dataset files")
    p.add_argument("--data", required=True, nargs="+", help="dataset file(s)")
    p.add_argument("--types", required=True, help="types file")
    p.set_defaults(func=cmd_validate)


def _add_datasets(sub: Any) -> None:
    p = sub.add_parser(
        "datasets",
        help="download benchmark datasets",
        description="Download the benchmark datasets in the SpERT JSON format.",
    )
    actions = p.add_subparsers(dest="datasets_command", required=True, metavar="COMMAND")
    d = actions.add_parser(
        "download",
        help="download and verify a dataset",
        description="Download a dataset into DIR/NAME/ and verify every file (JSON, types, "
        "sentence counts); files already present and valid are kept. The base URL is "
        f"--base-url, else ${ENV_VAR}, else {DEFAULT_BASE_URL}.",
    )
    d.add_argument("name", choices=list(DATASETS), help="dataset")
    d.add_argument("--dir", required=True, help="directory; the files go to DIR/NAME/")
    d.add_argument("--base-url", help=f"where NAME/FILE are looked up (default: ${ENV_VAR})")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.set_defaults(func=cmd_download)


def _add_convert(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="convert other dataset formats to SpERT JSON",
        description="Convert a dataset in another format to SpERT JSON.",
    )
    formats = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    d = formats.add_parser(
        "dygie",
        help="DyGIE/PURE document-level JSON Lines (e.g. SciERC documents/*.json)",
        description="One SpERT record per sentence: document token offsets become sentence "
        "offsets, inclusive ends exclusive ones, -LRB- -RRB- -LSB- -RSB- -LCB- -RCB- brackets.",
    )
    d.add_argument("--input", required=True, help="DyGIE JSON Lines file, one document a line")
    d.add_argument("--out", required=True, help="SpERT JSON file (.jsonl for JSON Lines)")
    d.add_argument(
        "--types",
        help="types file: spell type labels as it does (matched case-insensitively) and reject "
        "unknown ones; without it labels are kept as they are",
    )
    d.add_argument(
        "--doc-ids",
        action="store_true",
        help="give each record a doc_id (its document's doc_key), for training and predicting "
        "with --context-words",
    )
    d.set_defaults(func=cmd_convert_dygie)
