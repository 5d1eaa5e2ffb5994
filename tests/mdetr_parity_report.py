"""Print the parity table of mmn's Moment-DETR against the official jayleicn/moment_detr outputs recorded in a
fixture folder (the layout of shared/fixtures/mdetr_parity, see its README):

    python tests/mdetr_parity_report.py FIXTURE_DIR      (default: tests/fixtures/mdetr_parity)

Rows: quantity | max abs diff | tolerance | ok. Exit status 0 only when every compared quantity is within
its tolerance; rows marked SKIP are hooks the integration fills (data pipeline, QVHighlights metrics).
The same comparisons as tests/test_mdetr_parity.py, measured instead of asserted (tests/helpers/mdetr_parity.py).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from helpers.mdetr_parity import compare_all, format_table  # noqa: E402


def main(argv):
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        print(__doc__)
        return 2
    folder = argv[0] if argv else os.path.join(HERE, "fixtures", "mdetr_parity")
    rows = compare_all(folder)
    print(format_table(rows))
    failed = [r for r in rows if r.ok is False]
    skipped = [r for r in rows if r.ok is None]
    print(f"\n{len(rows) - len(failed) - len(skipped)} within tolerance, {len(failed)} failed, "
          f"{len(skipped)} skipped (hooks for the integration) -- {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
