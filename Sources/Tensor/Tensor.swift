import CBLAS
import Foundation
#if os(Linux)
import Glibc
#endif

/// A contiguous Float32 buffer, 64-byte aligned, shared by reference between the tensors that view it.
///
/// Storages are created by `Tensor(shape:)` (owned by that tensor and its copies) or handed out and reused by a
/// `Workspace` (per-stream arena). `generation` changes each time a workspace hands the storage out again, so a
/// tensor kept past `Workspace.beginFrame()` is detected (`Tensor.checkValid()`) instead of silently aliasing.
public final class TensorStorage: @unchecked Sendable {
    /// Number of Float32 elements the buffer holds.
    public let capacity: Int
    @usableFromInline let base: UnsafeMutablePointer<Float>
    @usableFromInline var generation: UInt64 = 0

    /// Allocates an uninitialised buffer of `capacity` floats (at least 1 so the pointer is never dangling).
    public init(capacity: Int) {
        precondition(capacity >= 0, "negative tensor capacity")
        self.capacity = capacity
        let bytes = max(capacity, 1) * 4
        #if os(Linux)
        if bytes >= Self.hugePageBytes {
            // Feature maps of a few MB and up (kept state of the temporal cache, workspace buffers): 2 MB-aligned,
            // so a kernel that backs memory with transparent huge pages can. Marking them (`madvise`, the
            // kernel's usual THP mode) is opt-in: a huge page's first touch zeroes 2 MB, which on a virtual
            // machine can cost more than the fewer TLB misses save (docs/tensor.md).
            var raw: UnsafeMutableRawPointer?
            let rounded = (bytes + Self.hugePageBytes - 1) / Self.hugePageBytes * Self.hugePageBytes
            guard posix_memalign(&raw, Self.hugePageBytes, rounded) == 0, let raw else {
                fatalError("out of memory allocating \(bytes) bytes for a tensor")
            }
            if Self.marksHugePages { _ = madvise(raw, rounded, MADV_HUGEPAGE) }
            base = raw.bindMemory(to: Float.self, capacity: max(capacity, 1))
            memaligned = true
            return
        }
        #endif
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        base = raw.bindMemory(to: Float.self, capacity: max(capacity, 1))
        memaligned = false
    }

    /// Buffers of at least this many bytes are allocated on huge-page boundaries (Linux).
    static let hugePageBytes = 2 << 20

    /// Whether this process marks its large buffers for transparent huge pages (`hugePagesDecision` on the
    /// environment); the warning, if any, went to stderr once.
    static let marksHugePages: Bool = {
        let d = hugePagesDecision(environment: ProcessInfo.processInfo.environment)
        if let w = d.warning { FileHandle.standardError.write(Data(("fpnstream: " + w + "\n").utf8)) }
        return d.enabled
    }()

    /// On when `FPNSTREAM_HUGEPAGES` is `on`; off when it is unset or `off`; any other value warns and stays off.
    static func hugePagesDecision(environment: [String: String]) -> (enabled: Bool, warning: String?) {
        switch environment["FPNSTREAM_HUGEPAGES"]?.lowercased() ?? "" {
        case "on": return (true, nil)
        case "", "off": return (false, nil)
        case let other: return (false, "FPNSTREAM_HUGEPAGES=\(other) is not a setting (on, off); huge pages stay off")
        }
    }

    /// Allocated by `posix_memalign` (freed with `free`).
    private let memaligned: Bool

    deinit {
        #if os(Linux)
        if memaligned { free(base); return }
        #endif
        UnsafeMutableRawPointer(base).deallocate()
    }
}

/// A Float32 tensor: a shape over a contiguous row-major region of a `TensorStorage`.
///
/// Images and feature maps are NCHW (`shape == [n, c, h, w]`); linear layers use `[n, features]`.
/// `Tensor` is a *view*: copying the struct shares the storage (no copy-on-write), exactly like a buffer
/// handle. Ops write their results into an output tensor obtained from a `Workspace` (or given explicitly).
public struct Tensor: @unchecked Sendable {
    /// Dimensions, outermost first (NCHW for 4-D feature maps).
    public let shape: [Int]
    /// The buffer this tensor views.
    public let storage: TensorStorage
    /// Element offset of this view's first element inside `storage`.
    public let offset: Int
    @usableFromInline let generation: UInt64

    /// Number of elements (product of `shape`).
    public var count: Int { shape.reduce(1, *) }
    /// Number of dimensions.
    public var rank: Int { shape.count }

    /// A new tensor with its own storage, every element set to `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        let n = shape.reduce(1, *)
        let s = TensorStorage(capacity: n)
        s.base.initialize(repeating: value, count: n)
        self.init(shape: shape, storage: s, offset: 0)
    }

    /// A new tensor holding `data` (row-major, `data.count` must equal the shape's element count).
    public init(shape: [Int], data: [Float]) {
        let n = shape.reduce(1, *)
        precondition(data.count == n, "data has \(data.count) elements, shape \(shape) needs \(n)")
        let s = TensorStorage(capacity: n)
        data.withUnsafeBufferPointer { s.base.initialize(from: $0.baseAddress!, count: n) }
        self.init(shape: shape, storage: s, offset: 0)
    }

    /// A view of `storage` starting at `offset` (elements); the region must fit.
    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        let n = shape.reduce(1, *)
        precondition(offset >= 0 && offset + n <= storage.capacity,
                     "view \(shape) at \(offset) exceeds storage of \(storage.capacity)")
        self.shape = shape
        self.storage = storage
        self.offset = offset
        self.generation = storage.generation
    }

    // MARK: NCHW accessors (4-D tensors)

    /// Batch size of an NCHW tensor.
    public var n: Int { shape[0] }
    /// Channels of an NCHW tensor.
    public var c: Int { shape[1] }
    /// Height of an NCHW tensor.
    public var h: Int { shape[2] }
    /// Width of an NCHW tensor.
    public var w: Int { shape[3] }

    /// Traps when this view outlived its workspace frame (its storage was handed out again).
    @inlinable public func checkValid() {
        precondition(generation == storage.generation,
                     "tensor \(shape) used after its Workspace frame ended (storage was reused)")
    }

    /// Pointer to the first element. Internal: C pointers stay inside the Tensor module.
    @usableFromInline package var ptr: UnsafeMutablePointer<Float> { storage.base + offset }

    /// Read-only access to the elements (row-major).
    @inlinable public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        checkValid()
        return try body(UnsafeBufferPointer(start: ptr, count: count))
    }

    /// Mutable access to the elements (row-major). Writes are visible through every view of the storage.
    @inlinable public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        checkValid()
        return try body(UnsafeMutableBufferPointer(start: ptr, count: count))
    }

    /// The elements as an array (a copy).
    public var array: [Float] { withUnsafeBufferPointer { Array($0) } }

    /// Element at a full multi-index (slow; for tests and small tensors).
    public subscript(_ index: Int...) -> Float {
        get { ptr[flatIndex(index)] }
        nonmutating set { ptr[flatIndex(index)] = newValue }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) for shape \(shape)")
        var flat = 0
        for (i, d) in zip(index, shape) {
            precondition(i >= 0 && i < d, "index \(index) out of bounds for shape \(shape)")
            flat = flat * d + i
        }
        return flat
    }

    /// The same elements under another shape with the same element count (shares storage).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage, offset: offset)
    }

    /// Item `index` of the outermost dimension as a view (e.g. one image of an NCHW batch, shape `[1, c, h, w]`).
    public func batchItem(_ index: Int) -> Tensor {
        precondition(index >= 0 && index < shape[0], "batch index \(index) out of \(shape[0])")
        var s = shape
        s[0] = 1
        return Tensor(shape: s, storage: storage, offset: offset + index * (count / shape[0]))
    }

    /// Copies every element of `source` (same element count) into this tensor.
    public func copy(from source: Tensor) {
        precondition(source.count == count, "copy \(source.shape) into \(shape)")
        source.checkValid(); checkValid()
        ptr.update(from: source.ptr, count: count)
    }

    /// Sets every element to `value`.
    public func fill(_ value: Float) {
        checkValid()
        ptr.update(repeating: value, count: count)
    }
}

extension Tensor: CustomStringConvertible {
    /// `Tensor[1, 256, 48, 80]`.
    public var description: String { "Tensor\(shape)" }
}

/// OpenBLAS configuration as seen at run time.
public enum BLASInfo {
    /// `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64".
    public static var config: String { String(cString: openblas_get_config()) }
    /// Threads OpenBLAS will use.
    public static var threads: Int { Int(openblas_get_num_threads()) }
    /// Sets the number of threads OpenBLAS uses (process-wide).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    /// The CPU core type OpenBLAS selected (e.g. "Haswell").
    public static var coreName: String { String(cString: openblas_get_corename()) }
    /// `0.3.21`, from the configuration string.
    public static var version: String {
        config.split(separator: " ").dropFirst().first.map(String.init) ?? "?"
    }
}
