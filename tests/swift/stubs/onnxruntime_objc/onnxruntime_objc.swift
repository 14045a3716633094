// Stub of the ONNX Runtime Objective-C API as Swift imports it, for `swiftc -typecheck` on Linux.
// Declarations only; bodies are fatalError().
// @discardableResult marks what came from C or Objective-C: Swift imports those results as discardable.
//
// Source: objectivec/include/{ort_env,ort_enums,ort_session,ort_value,ort_coreml_execution_provider}.h at
// github.com/microsoft/onnxruntime-swift-package-manager tags 1.24.1 and 1.24.2 (identical there; the SPM
// repository vendors onnxruntime's objectivec/ folder, commit 8596bfe "update objectivec directory from
// onnxruntime/objectivec" for ORT 1.24.1). Swift import rules applied by hand:
//   - `(nullable instancetype)initWithX:... error:(NSError**)` -> `init(x:...) throws`
//   - `(BOOL)fooWithError:` / `(BOOL)foo:... error:` -> `func foo(...) throws` (Void)
//   - `(nullable T*)fooWithError:` -> `func foo() throws -> T` (non-optional)
//   - `int` -> Int32, NSString -> String, NSArray<NSNumber*> -> [NSNumber], NSSet<NSString*> -> Set<String>,
//     untyped NSDictionary -> [AnyHashable: Any], NS_ENUM(int32_t) -> enum with Int32 raw values.
// Labels that come from Swift's omit-needless-words pruning (`appendCoreMLExecutionProvider(with:)`,
// `appendCoreMLExecutionProvider(withOptionsV2:)`, `registerCustomOps(functionPointer:)`,
// `registerCustomOps(usingFunction:)`) were checked against Swift sources that call them (the SPM
// repository's own SwiftOnnxRuntimeBindingsTests.swift and apps on GitHub).
//
// Module name: CocoaPods' `onnxruntime-objc` pod is imported as `onnxruntime_objc`; the Swift Package
// Manager package (product "onnxruntime") is imported as `OnnxRuntimeBindings`. The test harness builds this
// same file under both module names.
@_exported import Foundation

// MARK: ort_enums.h

public enum ORTLoggingLevel: Int32, Sendable {
    case verbose = 0
    case info = 1
    case warning = 2
    case error = 3
    case fatal = 4
}

public enum ORTValueType: Int32, Sendable {
    case unknown = 0
    case tensor = 1
}

/// Swift lowercases the first word of the stripped case names: `.uInt8`, `.uInt32`, `.uInt64`.
public enum ORTTensorElementDataType: Int32, Sendable {
    case undefined = 0
    case float = 1
    case int8 = 2
    case uInt8 = 3
    case int32 = 4
    case uInt32 = 5
    case int64 = 6
    case uInt64 = 7
    case string = 8
}

/// `.layout` is in the 1.24.x headers (added with the 1.24.1 objectivec/ update), not in 1.23.0's.
public enum ORTGraphOptimizationLevel: Int32, Sendable {
    case none = 0
    case basic = 1
    case extended = 2
    case layout = 3
    case all = 4
}

// MARK: ort_env.h

/// `NSString* _Nullable ORTVersion(void)`.
@discardableResult
public func ORTVersion() -> String? { fatalError() }

open class ORTEnv: NSObject {
    @available(*, unavailable)
    override public init() { fatalError() }

    /// `initWithLoggingLevel:error:`.
    public init(loggingLevel: ORTLoggingLevel) throws { fatalError() }
}

// MARK: ort_session.h

open class ORTSession: NSObject {
    @available(*, unavailable)
    override public init() { fatalError() }

    /// `initWithEnv:modelPath:sessionOptions:error:` (sessionOptions is nullable).
    public init(env: ORTEnv, modelPath path: String, sessionOptions: ORTSessionOptions?) throws { fatalError() }

    /// `runWithInputs:outputs:runOptions:error:` (preallocated outputs; BOOL -> Void throws).
    open func run(
        withInputs inputs: [String: ORTValue],
        outputs: [String: ORTValue],
        runOptions: ORTRunOptions?
    ) throws {
        fatalError()
    }

    /// `runWithInputs:outputNames:runOptions:error:`.
    @discardableResult
    open func run(
        withInputs inputs: [String: ORTValue],
        outputNames: Set<String>,
        runOptions: ORTRunOptions?
    ) throws -> [String: ORTValue] {
        fatalError()
    }

    @discardableResult
    open func inputNames() throws -> [String] { fatalError() }
    @discardableResult
    open func overridableInitializerNames() throws -> [String] { fatalError() }
    @discardableResult
    open func outputNames() throws -> [String] { fatalError() }
}

/// An NSObject subclass in Objective-C; not here, because Swift cannot override NSObject's `init()` with the
/// throwing `init()` that `initWithError:` + NS_SWIFT_NAME(init()) import as (`init` itself is NS_UNAVAILABLE).
open class ORTSessionOptions {
    /// `initWithError:` with NS_SWIFT_NAME(init()) -> `init() throws`.
    public init() throws { fatalError() }

    /// `appendExecutionProvider:providerOptions:error:`.
    open func appendExecutionProvider(_ providerName: String, providerOptions: [String: String]) throws {
        fatalError()
    }

    open func setIntraOpNumThreads(_ intraOpNumThreads: Int32) throws { fatalError() }
    open func setGraphOptimizationLevel(_ graphOptimizationLevel: ORTGraphOptimizationLevel) throws { fatalError() }
    open func setOptimizedModelFilePath(_ optimizedModelFilePath: String) throws { fatalError() }
    open func setLogID(_ logID: String) throws { fatalError() }
    open func setLogSeverityLevel(_ loggingLevel: ORTLoggingLevel) throws { fatalError() }

    /// `addConfigEntryWithKey:value:error:`.
    open func addConfigEntry(withKey key: String, value: String) throws { fatalError() }

    /// `registerCustomOpsUsingFunction:error:`.
    open func registerCustomOps(usingFunction registrationFuncName: String) throws { fatalError() }

    /// `enableOrtExtensionsCustomOpsWithError:`.
    open func enableOrtExtensionsCustomOps() throws { fatalError() }
    // Not stubbed: registerCustomOpsUsingFunctionPointer: (Swift `registerCustomOps(functionPointer:)`), whose
    // C function-pointer type ORTCAPIRegisterCustomOpsFnPtr needs onnxruntime's C headers.
}

/// Not an NSObject subclass here, for the reason given at ORTSessionOptions.
open class ORTRunOptions {
    /// `initWithError:` with NS_SWIFT_NAME(init()) -> `init() throws`.
    public init() throws { fatalError() }

    open func setLogTag(_ logTag: String) throws { fatalError() }
    open func setLogSeverityLevel(_ loggingLevel: ORTLoggingLevel) throws { fatalError() }
    open func addConfigEntry(withKey key: String, value: String) throws { fatalError() }
}

// MARK: ort_value.h

open class ORTValue: NSObject {
    @available(*, unavailable)
    override public init() { fatalError() }

    /// `initWithTensorData:elementType:shape:error:` (the NSMutableData is used in place, not copied).
    public init(tensorData: NSMutableData, elementType: ORTTensorElementDataType, shape: [NSNumber]) throws {
        fatalError()
    }

    /// `initWithTensorStringData:shape:error:`.
    public init(tensorStringData: [String], shape: [NSNumber]) throws { fatalError() }

    @discardableResult
    open func typeInfo() throws -> ORTValueTypeInfo { fatalError() }
    @discardableResult
    open func tensorTypeAndShapeInfo() throws -> ORTTensorTypeAndShapeInfo { fatalError() }
    @discardableResult
    open func tensorData() throws -> NSMutableData { fatalError() }
    @discardableResult
    open func tensorStringData() throws -> [String] { fatalError() }
}

open class ORTValueTypeInfo: NSObject {
    open var type: ORTValueType {
        get { fatalError() }
        set { fatalError() }
    }

    open var tensorTypeAndShapeInfo: ORTTensorTypeAndShapeInfo? {
        get { fatalError() }
        set { fatalError() }
    }
}

open class ORTTensorTypeAndShapeInfo: NSObject {
    open var elementType: ORTTensorElementDataType {
        get { fatalError() }
        set { fatalError() }
    }

    open var shape: [NSNumber] {
        get { fatalError() }
        set { fatalError() }
    }
}

// MARK: ort_coreml_execution_provider.h

/// `BOOL ORTIsCoreMLExecutionProviderAvailable(void)`.
@discardableResult
public func ORTIsCoreMLExecutionProviderAvailable() -> Bool { fatalError() }

open class ORTCoreMLExecutionProviderOptions: NSObject {
    override public init() { fatalError() }

    open var useCPUOnly: Bool {
        get { fatalError() }
        set { fatalError() }
    }

    open var useCPUAndGPU: Bool {
        get { fatalError() }
        set { fatalError() }
    }

    open var enableOnSubgraphs: Bool {
        get { fatalError() }
        set { fatalError() }
    }

    open var onlyEnableForDevicesWithANE: Bool {
        get { fatalError() }
        set { fatalError() }
    }

    open var onlyAllowStaticInputShapes: Bool {
        get { fatalError() }
        set { fatalError() }
    }

    open var createMLProgram: Bool {
        get { fatalError() }
        set { fatalError() }
    }
}

extension ORTSessionOptions {
    /// `appendCoreMLExecutionProviderWithOptions:error:`.
    public func appendCoreMLExecutionProvider(with options: ORTCoreMLExecutionProviderOptions) throws {
        fatalError()
    }

    /// `appendCoreMLExecutionProviderWithOptionsV2:error:` (untyped NSDictionary; keys and values are
    /// strings such as "MLComputeUnits": "CPUAndNeuralEngine"). Present at SPM tags 1.24.1 and 1.24.2;
    /// absent from the 1.23.0 sources (SPM commit b2e6c9de).
    public func appendCoreMLExecutionProvider(withOptionsV2 providerOptions: [AnyHashable: Any]) throws {
        fatalError()
    }
}
