"""Rebuild reference/okapi_release.csv: the size and SHA-256 of every released Okapi data file.

    git clone https://github.com/nlp-uoregon/Okapi.git /tmp/Okapi   # no LFS content needed
    python tools/okapi_release_table.py /tmp/Okapi > reference/okapi_release.csv

The data sat in the repository as git-LFS objects; each file's pointer (commit 07aaf12,
the last one before the files were renamed away and deleted) records the object's
`oid sha256:` and `size`. Those two values are what `fetch_okapi_release` checks every
downloaded or copied file against.
"""

import argparse
import csv
import subprocess
import sys

# nlp-uoregon/Okapi "Update ReadMe", 2023-08-06: the datasets/ folders under their final names.
COMMIT = "07aaf12e9b22fcd2e16f9b5c436f77fb88353561"
COLUMNS = ("dataset", "file", "sha256", "size")


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def parse_pointer(text: str) -> tuple[str, int]:
    """(sha256, size) of a git-LFS pointer file."""
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    algorithm, digest = fields["oid"].split(":", 1)
    if algorithm != "sha256":
        raise ValueError(f"unexpected LFS oid {fields['oid']}")
    return digest, int(fields["size"])


def pointer_rows(repo: str, commit: str = COMMIT) -> list[dict]:
    rows = []
    for path in git(repo, "ls-tree", "-r", "--name-only", commit, "datasets/").split():
        _, dataset, file = path.split("/")
        sha256, size = parse_pointer(git(repo, "show", f"{commit}:{path}"))
        rows.append({"dataset": dataset, "file": file, "sha256": sha256, "size": size})
    return sorted(rows, key=lambda row: (row["dataset"], row["file"]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="a clone of nlp-uoregon/Okapi (a bare one will do)")
    parser.add_argument("--commit", default=COMMIT, help=f"the commit whose pointer files are read (default: {COMMIT})")
    args = parser.parse_args(argv)
    writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(pointer_rows(args.repo, args.commit))


if __name__ == "__main__":
    main()
