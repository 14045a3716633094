"""Validation: run each artifact on the host, compare it with FP32, and decide whether it may ship.

``metrics`` holds the one definition of every number the report and the gates use; ``gates`` turns
those numbers into pass/fail against the config's bars. Both are pure numpy/pydantic, so importing
this package stays cheap; runners that need onnxruntime or TFLite import them inside their functions.
"""
