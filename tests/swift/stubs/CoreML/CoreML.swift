// Stub of the CoreML API generated Swift uses, for `swiftc -typecheck` on Linux. Declarations only:
// names, argument labels, optionality, throws/async and types follow Apple's Swift declarations on
// developer.apple.com/documentation/coreml (checked 2026); bodies are fatalError().
// @discardableResult marks what came from C or Objective-C: Swift imports those results as discardable.
//
// `import CoreML` re-exports Foundation, CoreVideo and CoreGraphics on Apple platforms (Xcode's generated
// model classes use URL, CVPixelBuffer and CGImage with `import CoreML` alone), so the stub does too.
@_exported import CoreGraphics
@_exported import CoreVideo
@_exported import Foundation

/// `enum MLComputeUnits: Int`.
public enum MLComputeUnits: Int, Sendable {
    case cpuOnly = 0
    case cpuAndGPU = 1
    case all = 2
    case cpuAndNeuralEngine = 3  // iOS 16+
}

/// `enum MLMultiArrayDataType: Int`; raw values from MLMultiArray.h (0x10000 | bits for floats,
/// 0x20000 | bits for integers). `.float` / `.float64` are `static var` aliases, as in Swift.
public enum MLMultiArrayDataType: Int, Sendable {
    case double = 65600  // 0x10000 | 64
    case float32 = 65568  // 0x10000 | 32
    case float16 = 65552  // 0x10000 | 16, iOS 16+
    case int32 = 131_104  // 0x20000 | 32
    case int8 = 131_080  // 0x20000 | 8, iOS 26+ only
    public static var float64: MLMultiArrayDataType { .double }
    public static var float: MLMultiArrayDataType { .float32 }
}

/// `enum MLFeatureType: Int`.
public enum MLFeatureType: Int, Sendable {
    case invalid = 0
    case int64 = 1
    case double = 2
    case string = 3
    case image = 4
    case multiArray = 5
    case dictionary = 6
    case sequence = 7
    case state = 8  // iOS 18+
}

/// Element types usable with MLMultiArray's typed buffer accessors (Float16 is not available on Intel Macs).
public protocol MLShapedArrayScalar {}
extension Double: MLShapedArrayScalar {}
extension Float: MLShapedArrayScalar {}
extension Float16: MLShapedArrayScalar {}
extension Int32: MLShapedArrayScalar {}

open class MLMultiArray: NSObject {
    @available(*, unavailable)
    override public init() { fatalError() }

    /// `init(shape: [NSNumber], dataType: MLMultiArrayDataType) throws`.
    public init(shape: [NSNumber], dataType: MLMultiArrayDataType) throws { fatalError() }

    /// `init(dataPointer:shape:dataType:strides:deallocator:) throws`.
    public init(
        dataPointer: UnsafeMutableRawPointer,
        shape: [NSNumber],
        dataType: MLMultiArrayDataType,
        strides: [NSNumber],
        deallocator: ((UnsafeMutableRawPointer) -> Void)? = nil
    ) throws {
        fatalError()
    }

    /// `var dataPointer: UnsafeMutableRawPointer { get }`. Apple's docs list it as deprecated from 27.0
    /// (use withUnsafeMutableBytes / withUnsafeMutableBufferPointer instead); not marked here.
    open var dataPointer: UnsafeMutableRawPointer { fatalError() }
    open var dataType: MLMultiArrayDataType { fatalError() }
    open var shape: [NSNumber] { fatalError() }
    open var strides: [NSNumber] { fatalError() }
    open var count: Int { fatalError() }

    /// `subscript(idx: Int) -> NSNumber { get set }` (objectAtIndexedSubscript:).
    open subscript(idx: Int) -> NSNumber {
        get { fatalError() }
        set { fatalError() }
    }

    /// `subscript(key: [NSNumber]) -> NSNumber { get set }` (objectForKeyedSubscript:).
    open subscript(key: [NSNumber]) -> NSNumber {
        get { fatalError() }
        set { fatalError() }
    }

    // iOS 15.4+ Swift overlay accessors.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { fatalError() }

    public func withUnsafeMutableBytes<R>(
        _ body: (UnsafeMutableRawBufferPointer, [Int]) throws -> R
    ) rethrows -> R {
        fatalError()
    }

    public func withUnsafeBufferPointer<S, R>(
        ofType type: S.Type,
        _ body: (UnsafeBufferPointer<S>) throws -> R
    ) rethrows -> R where S: MLShapedArrayScalar {
        fatalError()
    }

    public func withUnsafeMutableBufferPointer<S, R>(
        ofType type: S.Type,
        _ body: (UnsafeMutableBufferPointer<S>, [Int]) throws -> R
    ) rethrows -> R where S: MLShapedArrayScalar {
        fatalError()
    }
}

open class MLFeatureValue: NSObject {
    @available(*, unavailable)
    override public init() { fatalError() }

    /// `convenience init(multiArray value: MLMultiArray)` (+featureValueWithMultiArray:).
    public convenience init(multiArray value: MLMultiArray) { fatalError() }
    /// `convenience init(pixelBuffer value: CVPixelBuffer)`.
    public convenience init(pixelBuffer value: CVPixelBuffer) { fatalError() }
    public convenience init(double value: Double) { fatalError() }
    public convenience init(int64 value: Int64) { fatalError() }
    public convenience init(string value: String) { fatalError() }

    open var type: MLFeatureType { fatalError() }
    open var isUndefined: Bool { fatalError() }
    open var multiArrayValue: MLMultiArray? { fatalError() }
    open var imageBufferValue: CVPixelBuffer? { fatalError() }
    open var doubleValue: Double { fatalError() }
    open var int64Value: Int64 { fatalError() }
    open var stringValue: String { fatalError() }
}

/// `protocol MLFeatureProvider` (an Objective-C protocol, so class-bound).
public protocol MLFeatureProvider: AnyObject {
    var featureNames: Set<String> { get }
    func featureValue(for featureName: String) -> MLFeatureValue?
}

open class MLDictionaryFeatureProvider: NSObject, MLFeatureProvider {
    @available(*, unavailable)
    override public init() { fatalError() }

    /// `init(dictionary: [String : Any]) throws` (values: MLFeatureValue or convertible to one).
    public init(dictionary: [String: Any]) throws { fatalError() }

    open var dictionary: [String: MLFeatureValue] { fatalError() }
    open subscript(featureName: String) -> MLFeatureValue? { fatalError() }
    open var featureNames: Set<String> { fatalError() }
    @discardableResult
    open func featureValue(for featureName: String) -> MLFeatureValue? { fatalError() }
}

open class MLMultiArrayConstraint: NSObject {
    open var shape: [NSNumber] { fatalError() }
    open var dataType: MLMultiArrayDataType { fatalError() }
}

open class MLImageConstraint: NSObject {
    open var pixelsHigh: Int { fatalError() }
    open var pixelsWide: Int { fatalError() }
    open var pixelFormatType: OSType { fatalError() }
}

open class MLFeatureDescription: NSObject {
    open var name: String { fatalError() }
    open var type: MLFeatureType { fatalError() }
    open var isOptional: Bool { fatalError() }
    open var multiArrayConstraint: MLMultiArrayConstraint? { fatalError() }
    open var imageConstraint: MLImageConstraint? { fatalError() }
}

open class MLModelDescription: NSObject {
    open var inputDescriptionsByName: [String: MLFeatureDescription] { fatalError() }
    open var outputDescriptionsByName: [String: MLFeatureDescription] { fatalError() }
}

open class MLModelConfiguration: NSObject {
    override public init() { fatalError() }
    open var computeUnits: MLComputeUnits {
        get { fatalError() }
        set { fatalError() }
    }

    open var allowLowPrecisionAccumulationOnGPU: Bool {
        get { fatalError() }
        set { fatalError() }
    }
}

open class MLPredictionOptions: NSObject {
    override public init() { fatalError() }
    /// `var outputBackings: [String : Any]` (iOS 16+).
    open var outputBackings: [String: Any] {
        get { fatalError() }
        set { fatalError() }
    }
}

open class MLModel: NSObject {
    @available(*, unavailable)
    override public init() { fatalError() }

    /// `convenience init(contentsOf url: URL) throws`.
    public convenience init(contentsOf url: URL) throws { fatalError() }
    /// `convenience init(contentsOf url: URL, configuration: MLModelConfiguration) throws`.
    public convenience init(contentsOf url: URL, configuration: MLModelConfiguration) throws { fatalError() }

    /// `class func load(contentsOf url: URL, configuration: MLModelConfiguration = MLModelConfiguration())
    /// async throws -> MLModel` (iOS 16+).
    open class func load(
        contentsOf url: URL,
        configuration: MLModelConfiguration = MLModelConfiguration()
    ) async throws -> MLModel {
        fatalError()
    }

    /// `class func compileModel(at modelURL: URL) throws -> URL`. Apple's docs list it as deprecated from
    /// 27.0 in favour of the async variant; not marked here.
    @discardableResult
    open class func compileModel(at modelURL: URL) throws -> URL { fatalError() }
    /// `class func compileModel(at url: URL) async throws -> URL` (iOS 16+).
    open class func compileModel(at url: URL) async throws -> URL { fatalError() }

    open var modelDescription: MLModelDescription { fatalError() }
    open var configuration: MLModelConfiguration { fatalError() }

    /// `func prediction(from input: any MLFeatureProvider) throws -> any MLFeatureProvider`.
    @discardableResult
    open func prediction(from input: any MLFeatureProvider) throws -> any MLFeatureProvider { fatalError() }

    /// `func prediction(from:options:) throws -> any MLFeatureProvider`.
    @discardableResult
    open func prediction(
        from input: any MLFeatureProvider,
        options: MLPredictionOptions
    ) throws -> any MLFeatureProvider {
        fatalError()
    }

    /// `func prediction(from:options: = MLPredictionOptions()) async throws -> any MLFeatureProvider` (iOS 17+).
    open func prediction(
        from input: any MLFeatureProvider,
        options: MLPredictionOptions = MLPredictionOptions()
    ) async throws -> any MLFeatureProvider {
        fatalError()
    }
}
