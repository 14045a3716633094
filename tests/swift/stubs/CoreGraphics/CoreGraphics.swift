// Stub of the CoreGraphics API generated Swift uses, for `swiftc -typecheck` on Linux. Declarations only:
// names, argument labels, optionality and types follow Apple's Swift declarations on
// developer.apple.com/documentation/coregraphics (checked 2026); bodies are fatalError().
// @discardableResult marks what came from C or Objective-C: Swift imports those results as discardable.

// CGFloat, CGPoint, CGSize and CGRect: on Apple platforms `import CoreGraphics` provides them; on Linux
// swift-corelibs-foundation defines the same structs (same initializers), so the stub re-exports exactly
// those four declarations rather than redefining them (a second CGRect would be ambiguous next to Foundation).
@_exported import struct Foundation.CGFloat
@_exported import struct Foundation.CGPoint
@_exported import struct Foundation.CGRect
@_exported import struct Foundation.CGSize

/// CGColorSpace is a Core Foundation type, imported into Swift as a class.
public final class CGColorSpace {
    private init() { fatalError() }
}

/// `func CGColorSpaceCreateDeviceRGB() -> CGColorSpace`.
@discardableResult
public func CGColorSpaceCreateDeviceRGB() -> CGColorSpace { fatalError() }

/// `enum CGImageAlphaInfo: UInt32` (raw values from CGImage.h).
public enum CGImageAlphaInfo: UInt32, Sendable {
    case none = 0
    case premultipliedLast = 1
    case premultipliedFirst = 2
    case last = 3
    case first = 4
    case noneSkipLast = 5
    case noneSkipFirst = 6
    case alphaOnly = 7
}

/// `struct CGBitmapInfo: OptionSet` over UInt32 (raw values from CGImage.h). Its alpha bits are a
/// CGImageAlphaInfo raw value: `CGBitmapInfo(rawValue: CGImageAlphaInfo.premultipliedLast.rawValue)`.
public struct CGBitmapInfo: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static var alphaInfoMask: CGBitmapInfo { CGBitmapInfo(rawValue: 0x1F) }
    public static var floatInfoMask: CGBitmapInfo { CGBitmapInfo(rawValue: 0xF00) }
    public static var floatComponents: CGBitmapInfo { CGBitmapInfo(rawValue: 1 << 8) }
    public static var byteOrderMask: CGBitmapInfo { CGBitmapInfo(rawValue: 0x7000) }
    public static var byteOrderDefault: CGBitmapInfo { CGBitmapInfo(rawValue: 0) }
    public static var byteOrder16Little: CGBitmapInfo { CGBitmapInfo(rawValue: 1 << 12) }
    public static var byteOrder32Little: CGBitmapInfo { CGBitmapInfo(rawValue: 2 << 12) }
    public static var byteOrder16Big: CGBitmapInfo { CGBitmapInfo(rawValue: 3 << 12) }
    public static var byteOrder32Big: CGBitmapInfo { CGBitmapInfo(rawValue: 4 << 12) }
}

/// `enum CGInterpolationQuality: Int32` (raw values from CGContext.h).
public enum CGInterpolationQuality: Int32, Sendable {
    case `default` = 0
    case none = 1
    case low = 2
    case high = 3
    case medium = 4
}

/// CGImage is a Core Foundation type, imported into Swift as a class (read-only properties).
public final class CGImage {
    private init() { fatalError() }
    public var width: Int { fatalError() }
    public var height: Int { fatalError() }
    public var bitsPerComponent: Int { fatalError() }
    public var bitsPerPixel: Int { fatalError() }
    public var bytesPerRow: Int { fatalError() }
    public var colorSpace: CGColorSpace? { fatalError() }
    public var alphaInfo: CGImageAlphaInfo { fatalError() }
    public var bitmapInfo: CGBitmapInfo { fatalError() }
}

/// CGContext is a Core Foundation type, imported into Swift as a class.
public final class CGContext {
    /// The bitmap-context initializer (CGBitmapContextCreate) as every SDK up to iOS 18 / Xcode 16 declares
    /// it: non-optional `space`, `bitmapInfo: UInt32` (pass `CGImageAlphaInfo.x.rawValue` or
    /// `CGBitmapInfo.rawValue`). The iOS 26 SDK adds an overload `space: CGColorSpace?, bitmapInfo:
    /// CGBitmapInfo`, and its docs mark some UInt32 variants deprecated from 27.x; that overload is left out
    /// on purpose so generated code also builds with Xcode 16.
    public init?(
        data: UnsafeMutableRawPointer?,
        width: Int,
        height: Int,
        bitsPerComponent: Int,
        bytesPerRow: Int,
        space: CGColorSpace,
        bitmapInfo: UInt32
    ) {
        fatalError()
    }

    /// `func draw(_ image: CGImage, in rect: CGRect, byTiling: Bool = false)`.
    public func draw(_ image: CGImage, in rect: CGRect, byTiling: Bool = false) { fatalError() }

    /// `var interpolationQuality: CGInterpolationQuality { get set }`.
    public var interpolationQuality: CGInterpolationQuality {
        get { fatalError() }
        set { fatalError() }
    }

    // CGBitmapContext accessors: `var data: UnsafeMutableRawPointer? { get }`, `var width: Int { get }`...
    public var data: UnsafeMutableRawPointer? { fatalError() }
    public var width: Int { fatalError() }
    public var height: Int { fatalError() }
    public var bytesPerRow: Int { fatalError() }

    /// `func makeImage() -> CGImage?` (CGBitmapContextCreateImage).
    @discardableResult
    public func makeImage() -> CGImage? { fatalError() }
}
