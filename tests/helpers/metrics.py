"""Scraping a `--metrics-listen` endpoint the way Prometheus does, parsed by prometheus_client."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT = 5.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]  # (name, labels) -> value


def scrape(url: str) -> Samples:
    """Every sample of `url` (http://HOST:PORT/metrics), by sample name and labels."""
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of sample `name` with exactly `labels` (KeyError if there is none)."""
    return samples[(name, frozenset(labels.items()))]


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The values of sample `name`, by the value of its label `label`."""
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}
