"""services/metrics.py: Prometheus text exposition 0.0.4, checked with prometheus_client's
parser."""

from __future__ import annotations

import pytest

from eventodb_cli.services.metrics import LABELS, prometheus_text

parser = pytest.importorskip("prometheus_client.parser")


def _families(text):
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def test_gauges_and_counters_parse_with_labels():
    rows = [
        {"category": "account", "group": "billing", "member": 0, "size": 3, "position": 10,
         "head": 20, "lagMessages": 4, "lagSeconds": 1.5, "messagesHandled": 7,
         "handlerFailures": 0},
        {"category": "account", "group": "billing", "member": 1, "size": 3, "position": 20,
         "head": 20, "lagMessages": 0, "lagSeconds": 0.0, "messagesHandled": 9,
         "handlerFailures": 2},
    ]
    text = prometheus_text(rows, LABELS)
    assert text.endswith("\n")
    fams = _families(text)
    assert fams["eventodb_consumer_position"].type == "gauge"
    assert fams["eventodb_consumer_lag_messages"].type == "gauge"
    assert fams["eventodb_consumer_messages_handled"].type == "counter"  # _total is the sample
    assert fams["eventodb_consumer_handler_failures"].type == "counter"
    lag = {s.labels["member"]: s.value for s in fams["eventodb_consumer_lag_messages"].samples}
    assert lag == {"0": 4, "1": 0}
    s0 = fams["eventodb_consumer_lag_seconds"].samples[0]
    assert s0.labels == {"category": "account", "group": "billing", "member": "0", "size": "3"}
    assert s0.value == 1.5
    handled = fams["eventodb_consumer_messages_handled"].samples
    assert {s.name for s in handled} == {"eventodb_consumer_messages_handled_total"}
    assert "# HELP eventodb_consumer_head " in text
    assert "# TYPE eventodb_consumer_head gauge" in text


def test_label_values_are_escaped():
    weird = 'a"b\\c\nd'
    text = prometheus_text([{"category": weird, "group": "g", "position": 1}], LABELS)
    assert '\\"' in text and "\\\\" in text and "\\n" in text
    s = _families(text)["eventodb_consumer_position"].samples[0]
    assert s.labels["category"] == weird


def test_unknown_values_and_labels_are_left_out():
    text = prometheus_text([{"category": "a", "group": None, "member": None, "position": None,
                             "lagMessages": 3}], LABELS)
    fams = _families(text)
    assert set(fams) == {"eventodb_consumer_lag_messages"}
    assert fams["eventodb_consumer_lag_messages"].samples[0].labels == {"category": "a"}
    assert prometheus_text([], LABELS) == ""


def test_bad_label_name_is_refused():
    with pytest.raises(ValueError):
        prometheus_text([{"position": 1}], ["bad-name"])
