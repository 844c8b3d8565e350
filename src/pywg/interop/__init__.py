"""pywg as an interop test bed: a conformance suite for any WireGuard.

``pywg interop --impl COMMAND`` (see :mod:`pywg.interop.cli`) runs every
scenario between pywg (this package's pywgd) and each implementation given,
and between every two of them, plus pywg's adversarial peer against each,
and prints a table of scenario × pair with pass / fail / skip and the
reason, throughput and latency per pair, or JSON with ``--json``.

The pieces:

- :mod:`pywg.interop.scenario`: the registry (:func:`scenario`), ``check``,
  ``Skipped``/``Failed``;
- :mod:`pywg.interop.context`: what a scenario gets, a fresh lab with the
  daemons running (``PairContext``, ``HostileContext``);
- :mod:`pywg.interop.pairs`: scenarios between two implementations
  (handshakes, address families, preshared key, keepalives, rekey, roaming,
  cookies under load, MTU and padding, allowed-IPs filtering, throughput);
- :mod:`pywg.interop.adversary` and :mod:`pywg.interop.hostile`: the
  adversarial peer, built on the sans-IO core, and what it sends;
- :mod:`pywg.interop.flood`: a handshake flood from a lab host;
- :mod:`pywg.interop.runner` and :mod:`pywg.interop.report`: running units
  side by side with time limits, and the verdict.

From Python::

    from pywg.interop.runner import run_suite
    from pywg.interop import report
    from pywg.lab.wireguard import WIREGUARD_GO

    results = run_suite([WIREGUARD_GO], scenarios=["handshake-a", "rekey"])
    print(report.text(results))
"""
