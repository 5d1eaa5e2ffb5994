"""Print the table of differences between our QD-DETR and the official code's recorded outputs:
``python tests/qddetr_parity_report.py FIXTURE_DIR [--summary]`` (a folder in the layout of
shared/fixtures/qddetr_parity; --summary: one row per kind of quantity, its worst difference).

Exit status 0 only when every quantity is within its tolerance (see tests/parity_tools/qddetr.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from parity_tools.qddetr import format_table, parity_rows, summarize  # noqa: E402


def main(argv):
    summary = "--summary" in argv
    argv = [a for a in argv if a != "--summary"]
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    folder = argv[0]
    if not os.path.isfile(os.path.join(folder, "qddetr_expected.pt")):
        print(f"{folder}: no qddetr_expected.pt (not a QD-DETR parity fixture folder)", file=sys.stderr)
        return 2
    rows = parity_rows(folder)
    print(format_table(summarize(rows) if summary else rows))
    failed = [r.name for r in rows if not r.ok]
    print(f"\n{len(rows)} quantities: {len(rows) - len(failed)} within tolerance, {len(failed)} outside")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
