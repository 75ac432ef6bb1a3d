"""Review records from the command line.

Record a verdict or a note on a run's patient, for scripts and tests, with the review page's
checks: ``python -m nsclc_engine.review note --run RUN_ID --patient ID --text TEXT --author
NAME [--verdict V] [--flag F]`` (--verdict: the verdict, TEXT its note; --flag: a note; both:
both).

Write a run's verdicts and notes out of the tool: ``python -m nsclc_engine.review export --run
RUN_ID --format dicom-sr|csv --out DIR``: one DICOM Comprehensive SR per reviewed patient,
referencing the patient's CT study and series, or one table ``DIR/review_RUN_ID.csv``
(:mod:`nsclc_engine.review.export`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from nsclc_engine.config import cli_error
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.review import store
from nsclc_engine.review.export import (
    FORMATS,
    export_csv,
    export_sr,
    finished_run,
    review_entries,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsclc_engine.review", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    note = commands.add_parser("note", help="record a verdict or a note on a run's patient")
    note.add_argument("--run", required=True, metavar="RUN_ID", help="a run in <artifacts>/runs/")
    note.add_argument("--patient", required=True, metavar="ID", help="one of the run's patients")
    note.add_argument("--text", required=True, help=f"the note (at most {store.MAX_TEXT} chars)")
    note.add_argument("--author", required=True, metavar="NAME", help="the reviewer")
    note.add_argument("--verdict", help=f"record a verdict: {', '.join(store.VERDICTS)}")
    note.add_argument("--flag", help=f"record a note with this flag: {', '.join(store.FLAGS)}")
    export = commands.add_parser("export", help="write a run's verdicts and notes out")
    export.add_argument("--run", required=True, metavar="RUN_ID", help="a run in <artifacts>/runs/")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--out", required=True, metavar="DIR", help="the folder to write to")
    for command in (note, export):
        command.add_argument(
            "--artifacts", help="artifacts folder (default $NSCLC_ARTIFACTS_DIR or ./artifacts)"
        )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # a line per attribute it copies
    try:
        return record(args) if args.command == "note" else export_main(args)
    except (ValueError, OSError) as error:  # OSError: a review database out of reach too
        return cli_error(error)


def record(args: argparse.Namespace) -> int:
    """The ``note`` command: every check before the first write."""
    if not (args.verdict or args.flag):
        raise ValueError(
            f"give --verdict ({', '.join(store.VERDICTS)}) to record a verdict, or --flag "
            f"({', '.join(store.FLAGS)}) to record a note"
        )
    for option, value, valid in (
        ("--verdict", args.verdict, store.VERDICTS),
        ("--flag", args.flag, store.FLAGS),
    ):
        if value and value not in valid:
            raise ValueError(f"{option} {value!r}: choose one of {', '.join(valid)}")
    if not args.author.strip():
        raise ValueError("--author is empty; give the reviewer's name")
    artifacts = args.artifacts or artifacts_dir()
    run = finished_run(args.run, artifacts)
    run.check_patient(args.patient)
    url = store.review_url(artifacts)
    case = f"patient {args.patient} of run {run.run_id}"
    if args.verdict:
        verdict_id = store.add_verdict(
            url, run.run_id, args.patient, run.source, args.verdict, args.text, args.author
        )
        print(f"verdict {verdict_id} recorded on {case}: {store.VERDICTS[args.verdict]}")
    if args.flag:
        note_id = store.add_note(
            url, run.run_id, args.patient, run.source, args.flag, args.text, args.author
        )
        print(f"note {note_id} recorded on {case}: {store.FLAGS[args.flag]}")
        if args.flag == store.EXCLUDE:
            print(
                f"{args.patient} is left out of the next cohort built from this data "
                "(reason review_excluded); withdraw the note to take it back"
            )
    return 0


def export_main(args: argparse.Namespace) -> int:
    artifacts = args.artifacts or artifacts_dir()
    run = finished_run(args.run, artifacts)
    entries = review_entries(artifacts, run.run_id)
    if entries.empty:
        print(f"no verdict or note on run {run.run_id}")
    if args.format == "csv":
        path = export_csv(run, entries, args.out)
        print(f"wrote {len(entries)} verdicts and notes to {path}")
        return 0
    exported = export_sr(run, entries, args.out)
    print(
        f"wrote {len(exported.written)} DICOM SR files to {args.out}; skipped "
        f"{len(exported.skipped)} patients whose CT could not be read"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
