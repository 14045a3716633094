"""ORT mobile, shared by the Android and iOS targets: ORT-format conversion, the runtime-version rule,
EP coverage from onnxruntime's own mobile usability checker, and per-EP session configs."""
