"""The command line: `python -m client batch FOLDER --api URL [options]`.

Exit status: 0 when every image succeeded (in this run or an earlier one) and, with --stow,
every SR was stored, 1 when some did not (failed, expired, still running at --timeout, or an SR
not stored), 2 for a usage error (nothing is sent), 130
when interrupted. stdout gets one line: the counts and where the results are."""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, TextIO
from urllib.parse import urlsplit

from client.auth import MODES, AuthError, make_auth
from client.batch import Batch, Counts
from client.jobs import JobsApi
from client.results import Busy, Results
from client.stow import Forwarder, parse_headers
from client.transport import Transport

DEFAULT_OUT = "xray-results"
USAGE_ERROR, SOME_FAILED, INTERRUPTED = 2, 1, 130


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m client",
                                  description="Clients of the chest X-ray API.")
    commands = top.add_subparsers(dest="command", required=True)
    batch = commands.add_parser(
        "batch", help="classify every image of a folder through the upload jobs",
        description="Sends every PNG, JPEG and DICOM under FOLDER through POST /xray/jobs "
                    "and writes OUT/results.jsonl and OUT/summary.csv. A re-run sends only "
                    "what has not succeeded yet.")
    batch.add_argument("folder", metavar="FOLDER", type=Path)
    batch.add_argument("--api", required=True, metavar="URL",
                       help="the API's base URL, e.g. https://<id>.execute-api.<region>."
                            "amazonaws.com/api or http://127.0.0.1:8000")
    batch.add_argument("--out", type=Path, metavar="OUT",
                       help=f"where the results go (default FOLDER/{DEFAULT_OUT})")
    batch.add_argument("--parallel", type=int, default=4, metavar="N",
                       help="files in flight at once (default 4)")
    batch.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                       help="how long to wait for one job after its upload (default 600); a "
                            "job still running then is polled again by the next run")
    batch.add_argument("--retries", type=int, default=5, metavar="N",
                       help="retries of a request after a network error, a 5xx or a 429, "
                            "with exponential backoff (default 5)")
    batch.add_argument("--auth", choices=MODES, default="none",
                       help="the stage's XRAY_AUTH (default none)")
    batch.add_argument("--api-key", metavar="KEY",
                       help="for api_key: the stage's key (default: $XRAY_API_KEY)")
    batch.add_argument("--token", metavar="ID_TOKEN",
                       help="for cognito: an id token of the user pool (default: "
                            "$XRAY_ID_TOKEN)")
    batch.add_argument("--region", help="for iam: the API's region, when the URL does not "
                                        "name it (a custom domain)")
    batch.add_argument("--stow", metavar="URL",
                       help="a DICOMweb server (its service root, e.g. http://pacs:8042/"
                            "dicom-web) to store the SR of each DICOM file that succeeded "
                            "into, with STOW-RS (URL/studies): it joins the image's study")
    batch.add_argument("--stow-header", action="append", default=[], metavar="'NAME: VALUE'",
                       help="a header for the DICOMweb server (e.g. 'Authorization: Bearer "
                            "...'), repeatable; the API's credentials are never sent there")
    batch.add_argument("--no-progress", action="store_true",
                       help="no progress bars (they are off anyway when stderr is no terminal)")
    return top


def main(argv: Optional[List[str]] = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr) -> int:
    args = parser().parse_args(argv)
    try:
        return run_batch(args, out, err)
    except UsageError as error:
        print(f"python -m client batch: error: {error}", file=err)
        return USAGE_ERROR


class UsageError(Exception):
    pass


def run_batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    api = args.api.rstrip("/")
    parts = urlsplit(api)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise UsageError(f"--api must be the API's base URL (http:// or https://), got "
                         f"{args.api!r}")
    if args.parallel < 1 or args.retries < 0 or args.timeout <= 0:
        raise UsageError("--parallel must be at least 1, --retries at least 0 and --timeout "
                         "more than 0")
    try:
        auth = make_auth(args.auth, api, api_key=args.api_key, id_token=args.token,
                         region=args.region)
    except AuthError as error:
        raise UsageError(str(error)) from None
    results_dir: Path = args.out if args.out is not None else folder / DEFAULT_OUT
    transport = Transport(auth, retries=args.retries)
    jobs = JobsApi(transport, api)
    forwarder = None
    if args.stow is not None:
        stow = urlsplit(args.stow)
        if stow.scheme not in ("http", "https") or not stow.hostname or stow.query:
            raise UsageError(f"--stow must be a DICOMweb server's URL (http:// or https://), "
                             f"got {args.stow!r}")
        try:
            headers = parse_headers(args.stow_header)
        except ValueError as error:
            raise UsageError(str(error)) from None
        forwarder = Forwarder(transport, api, args.stow, headers)
    elif args.stow_header:
        raise UsageError("--stow-header needs --stow")
    try:
        with Results(results_dir) as results:
            batch = Batch(jobs, results, folder, parallel=args.parallel,
                          timeout_s=args.timeout,
                          progress=False if args.no_progress else None, err=err,
                          forwarder=forwarder)
            try:
                counts = batch.run()
            except KeyboardInterrupt:
                print(final_line(batch.counts, results, interrupted=True, forwarder=forwarder),
                      file=out)
                return INTERRUPTED
            print(final_line(counts, results, forwarder=forwarder), file=out)
    except Busy as error:
        raise UsageError(f"{error}: wait for it, or give this one another --out") from None
    except OSError as error:
        raise UsageError(f"cannot write the results to {results_dir}: "
                         f"{error.strerror or error}") from None
    return 0 if counts.all_succeeded else SOME_FAILED


def final_line(counts: Counts, results: Results, interrupted: bool = False,
               forwarder: Optional[Forwarder] = None) -> str:
    parts = [f"{counts.images} image{'s' if counts.images != 1 else ''}: "
             f"{counts.succeeded} succeeded ({counts.already_done} already done, "
             f"{counts.sent} sent)", f"{counts.failed} failed"]
    if counts.still_running:
        parts.append(f"{counts.still_running} still running (a re-run polls them)")
    if interrupted:
        parts.append(f"{counts.images - counts.succeeded - counts.failed - counts.still_running}"
                     " not started (interrupted)")
    skipped = f"{counts.skipped} other file{'s' if counts.skipped != 1 else ''} skipped"
    if forwarder is not None:
        skipped += (f"; SRs to {forwarder.shown_url}: {counts.stored + counts.already_stored} "
                    f"stored ({counts.already_stored} already), {counts.stow_failed} failed")
    return (", ".join(parts) + f"; {skipped}. Results: {results.path}, "
            f"{results.summary_path}")
