"""device_bench: benchmark a packager bundle on Android phones over adb, and on this host.

Modules, one job each: ``adb`` (transport), ``device_info``, ``bundle`` (what to run), ``tools``
(registry of benchmark tools and their command lines), ``parsers`` (their outputs), ``runners``
(phones), ``host`` (this machine), ``results`` (JSON schema), ``compare``, ``table`` and ``cli``.
"""

__version__ = "0.1.0"
