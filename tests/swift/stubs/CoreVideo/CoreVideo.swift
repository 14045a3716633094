// Stub of the CoreVideo API generated Swift uses, for `swiftc -typecheck` on Linux. Declarations only:
// names, argument labels, optionality and types follow Apple's Swift declarations on
// developer.apple.com/documentation/corevideo (checked 2026); bodies are fatalError().
// @discardableResult marks what came from C or Objective-C: Swift imports those results as discardable.

/// MacTypes' `OSType` (= FourCharCode = UInt32). Real code gets it from Darwin through CoreVideo's
/// imports; Linux has no MacTypes, so the stub declares it here.
public typealias OSType = UInt32

/// `typealias CVOptionFlags = UInt64` (CVBase.h).
public typealias CVOptionFlags = UInt64

/// `typealias CVReturn = Int32`.
public typealias CVReturn = Int32

/// `var kCVReturnSuccess: CVReturn { get }` (an anonymous C enum constant, 0).
public var kCVReturnSuccess: CVReturn { 0 }

/// CVBuffer is a Core Foundation type, imported into Swift as a class.
public final class CVBuffer {
    private init() { fatalError() }
}

/// `typealias CVImageBuffer = CVBuffer`, `typealias CVPixelBuffer = CVImageBuffer`.
public typealias CVImageBuffer = CVBuffer
public typealias CVPixelBuffer = CVImageBuffer

/// `struct CVPixelBufferLockFlags: OptionSet` with `static var readOnly` (kCVPixelBufferLock_ReadOnly = 1).
public struct CVPixelBufferLockFlags: OptionSet, Sendable {
    public let rawValue: CVOptionFlags
    public init(rawValue: CVOptionFlags) { self.rawValue = rawValue }
    public static var readOnly: CVPixelBufferLockFlags { CVPixelBufferLockFlags(rawValue: 1) }
}

// Pixel format identifiers: `var kCVPixelFormatType_32BGRA: OSType { get }` etc. (four-char codes).
public var kCVPixelFormatType_32ARGB: OSType { 0x0000_0020 }
public var kCVPixelFormatType_32BGRA: OSType { 0x4247_5241 }  // 'BGRA'
public var kCVPixelFormatType_32RGBA: OSType { 0x5247_4241 }  // 'RGBA'

@discardableResult
public func CVPixelBufferLockBaseAddress(_ pixelBuffer: CVPixelBuffer, _ lockFlags: CVPixelBufferLockFlags) -> CVReturn {
    fatalError()
}

@discardableResult
public func CVPixelBufferUnlockBaseAddress(_ pixelBuffer: CVPixelBuffer, _ unlockFlags: CVPixelBufferLockFlags) -> CVReturn {
    fatalError()
}

@discardableResult
public func CVPixelBufferGetBaseAddress(_ pixelBuffer: CVPixelBuffer) -> UnsafeMutableRawPointer? { fatalError() }

@discardableResult
public func CVPixelBufferGetWidth(_ pixelBuffer: CVPixelBuffer) -> Int { fatalError() }

@discardableResult
public func CVPixelBufferGetHeight(_ pixelBuffer: CVPixelBuffer) -> Int { fatalError() }

@discardableResult
public func CVPixelBufferGetBytesPerRow(_ pixelBuffer: CVPixelBuffer) -> Int { fatalError() }

@discardableResult
public func CVPixelBufferGetPixelFormatType(_ pixelBuffer: CVPixelBuffer) -> OSType { fatalError() }
