"""Annotation-tool commands: ``spert import`` (brat, Label Studio, doccano -> a dataset folder)
and ``spert export`` (a SpERT dataset -> the tool's format, e.g. to correct it there)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spert.cli.common import CliError
from spert.data import read_types
from spert.data.formats.importer import (
    DOCUMENTS_FILE,
    READERS,
    SPLITS,
    TYPES_FILE,
    WRITERS,
    ImportOptions,
    export_dataset,
    import_documents,
    parse_split,
    read_document_texts,
)
from spert.data.formats.segment import UNITS, WORDS

_DEFAULTS = ImportOptions()


def cmd_import(args: argparse.Namespace) -> None:
    options = ImportOptions(
        unit=args.unit,
        words=args.words,
        max_span_size=args.max_span_size,
        discontinuous=args.discontinuous,
        annotation=args.annotation,
        lenient=args.lenient,
        split=parse_split(args.split),
        seed=args.seed,
        symmetric=tuple(args.symmetric or ()),
        skip_empty=args.skip_empty,
        label_config=args.label_config,
        doccano_labels=tuple(args.doccano_labels or ()),
        overwrite=args.overwrite,
    )
    split_inputs = {name: getattr(args, name) for name in SPLITS if getattr(args, name)}
    result = import_documents(
        args.format, args.out, args.inputs, split_inputs, options, progress=not args.quiet
    )
    print("\n".join(result.summary_lines()))


def cmd_export(args: argparse.Namespace) -> None:
    first = Path(args.data[0])
    types_path = Path(args.types) if args.types else first.parent / TYPES_FILE
    if not types_path.is_file():
        raise CliError(f"no types file: give --types (none at {types_path})")
    texts_path = Path(args.texts) if args.texts else first.parent / DOCUMENTS_FILE
    if args.texts and not texts_path.is_file():
        raise CliError(f"--texts {texts_path}: no such file")
    texts = read_document_texts(texts_path) if texts_path.is_file() else {}
    documents = export_dataset(
        args.format, args.data, args.out, read_types(types_path), texts, args.overwrite
    )
    exact = sum(d.id in texts for d in documents)
    if exact == len(documents):
        source = f"texts from {texts_path}"
    elif exact:
        source = f"texts from {texts_path} for {exact}, rebuilt from the tokens for the others"
    else:
        source = "texts rebuilt from the tokens" + (
            f": no document id is in {texts_path}" if texts else ""
        )
    print(f"{len(documents)} documents ({source}) -> {args.out}")


def register(sub: Any) -> None:
    """Add ``import`` and ``export``."""
    _add_import(sub)
    _add_export(sub)


def _add_import(sub: Any) -> None:
    p = sub.add_parser(
        "import",
        help="annotation-tool files (brat, Label Studio, doccano) to a SpERT dataset folder",
        description="Read annotation-tool exports (character offsets over whole documents) and "
        "write OUT/train.json, dev.json, test.json (SpERT JSON with doc_id and word offsets), "
        "types.json, documents.jsonl and import_report.{json,md}. Documents are split by "
        "document, never by sentence. Every annotation read is imported or listed in the "
        "report with its reason.",
    )
    p.add_argument("format", choices=list(READERS), help="the tool's format")
    p.add_argument("inputs", nargs="*", help="files, folders or globs (split by --split)")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument(
        "--split",
        default=",".join(str(f) for f in _DEFAULTS.split),
        help="fractions of documents in train, dev, test (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=_DEFAULTS.seed, help="seed of the split (default: %(default)s)"
    )
    for name in SPLITS:
        p.add_argument(
            f"--{name}", nargs="+", metavar="INPUT", help=f"{name} inputs, kept as given"
        )
    p.add_argument(
        "--unit",
        choices=UNITS,
        default=_DEFAULTS.unit,
        help="what one training example covers; relations across units are not imported "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--words",
        choices=WORDS,
        default=_DEFAULTS.words,
        help="spacy: words and sentences as `spert extract` splits text; whitespace: "
        "pre-tokenized text, one sentence a line (default: %(default)s)",
    )
    p.add_argument(
        "--max-span-size",
        type=int,
        default=_DEFAULTS.max_span_size,
        help="flag entities longer than this many words (default: %(default)s)",
    )
    p.add_argument(
        "--discontinuous",
        choices=("span", "drop"),
        default=_DEFAULTS.discontinuous,
        help="brat entities of several fragments: import the covering span, or drop them "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--annotation",
        default=_DEFAULTS.annotation,
        help="Label Studio: the annotation imported when a task has several: first, last, "
        "prediction or annotator:NAME (default: %(default)s)",
    )
    p.add_argument(
        "--lenient",
        action="store_true",
        help="malformed annotations become report entries instead of errors",
    )
    p.add_argument(
        "--symmetric",
        action="append",
        metavar="TYPE",
        help="make relation type TYPE symmetric whatever the tool marked (repeatable); the "
        "report counts, per type, the relations marked symmetric",
    )
    p.add_argument(
        "--skip-empty",
        action="store_true",
        help="brat, doccano: do not import documents without any annotation (else flagged)",
    )
    p.add_argument(
        "--label-config",
        metavar="XML",
        help="Label Studio: the project's labeling config; its labels and relations are kept "
        "in types.json even when unused",
    )
    p.add_argument(
        "--doccano-labels",
        nargs="+",
        metavar="JSON",
        help="doccano: its label files (Labels > Export Labels, or the OUT_STEM.span_types.json "
        "and OUT_STEM.relation_types.json `spert extract --format doccano` writes): span "
        "types, then relation types; declared types, kept in types.json even when unused",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --out folder that holds files an import did not write",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="a SpERT dataset to brat, Label Studio or doccano (e.g. to correct it there)",
        description="Write SpERT sentences as documents in a tool's format: brat writes a "
        "folder (.txt + .ann per document, annotation.conf), Label Studio a JSON file of tasks, "
        "doccano JSON Lines. Sentences are grouped into documents by doc_id; texts come from "
        "the documents.jsonl an import wrote beside the data (exact), else are rebuilt from "
        "the tokens.",
    )
    p.add_argument("format", choices=list(WRITERS), help="the tool's format")
    p.add_argument("data", nargs="+", help="SpERT dataset file(s)")
    p.add_argument(
        "--out",
        required=True,
        help="output folder (brat; written whole, then swapped in) or file",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="brat: replace a folder that holds other documents (else refused)",
    )
    p.add_argument("--types", help=f"types file (default: {TYPES_FILE} beside the first file)")
    p.add_argument(
        "--texts", help=f"document texts (default: {DOCUMENTS_FILE} beside the first file)"
    )
    p.set_defaults(func=cmd_export)
