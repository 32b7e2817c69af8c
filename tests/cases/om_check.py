"""Parse OpenMetrics expositions with the official Python client's parser.

Usage: om_check.py FILE...  Prints "FILE<TAB>error" for each file the
parser refuses; exit status 1 when any was refused. Installed by ./dev setup
(prometheus_client from PyPI in a virtualenv); run by tests/cases/main.rs.
"""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

bad = 0
for path in sys.argv[1:]:
    # Bytes as served: text mode would turn a \r inside a label value into
    # a line break the agent never wrote.
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    try:
        for _family in text_string_to_metric_families(text):
            pass
    except Exception as e:  # the parser raises ValueError and others
        bad += 1
        msg = f"{type(e).__name__}: {e}".replace("\n", "\\n").replace("\t", " ")
        print(f"{path}\t{msg}")
sys.exit(1 if bad else 0)
