import Foundation

/// Writes small ONNX models in protobuf wire format for tests (field numbers from onnx.proto), independently of
/// the decoder under test: the encoder is a few lines of spec, the decoder is what the tests exercise.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: UInt64) { varint(UInt64(field) << 3 | wire) }
    mutating func int(_ field: Int, _ v: Int64) { key(field, 0); varint(UInt64(bitPattern: v)) }
    mutating func float(_ field: Int, _ v: Float) {
        key(field, 5)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
    }
    mutating func bytes(_ field: Int, _ b: [UInt8]) { key(field, 2); varint(UInt64(b.count)); bytes += b }
    mutating func string(_ field: Int, _ s: String) { bytes(field, Array(s.utf8)) }
    mutating func message(_ field: Int, _ build: (inout ProtoWriter) -> Void) {
        var w = ProtoWriter(); build(&w); bytes(field, w.bytes)
    }
    mutating func packedInts(_ field: Int, _ v: [Int64]) {
        var w = ProtoWriter(); for x in v { w.varint(UInt64(bitPattern: x)) }; bytes(field, w.bytes)
    }
}

/// A test model: nodes, float initializers, one input and named outputs.
struct ONNXBuilder {
    enum Attr {
        case int(Int64), float(Float), string(String), ints([Int64]), floats([Float])
    }
    struct Node {
        var op: String
        var inputs: [String]
        var outputs: [String]
        var name = ""
        var attrs: [(String, Attr)] = []
    }

    var opset: Int64 = 13
    var input = "x"
    var inputDims: [Int64] = [1, 3, 32, 32]
    var outputs: [String] = []
    var nodes: [Node] = []
    var initializers: [(String, [Int], [Float])] = []
    var intInitializers: [(String, [Int], [Int64])] = []
    /// Store float initializers as float_data instead of raw_data.
    var floatDataEncoding = false
    /// `metadata_props`, written in this order.
    var metadata: [(String, String)] = []

    mutating func node(_ op: String, _ inputs: [String], _ output: String, name: String = "", _ attrs: [(String, Attr)] = []) {
        nodes.append(Node(op: op, inputs: inputs, outputs: [output], name: name, attrs: attrs))
    }

    /// A node with several outputs (Split).
    mutating func node(_ op: String, _ inputs: [String], outputs: [String], _ attrs: [(String, Attr)] = []) {
        nodes.append(Node(op: op, inputs: inputs, outputs: outputs, attrs: attrs))
    }

    mutating func intConstant(_ name: String, _ values: [Int64]) { intInitializers.append((name, [values.count], values)) }

    mutating func constant(_ name: String, _ dims: [Int], _ values: [Float]) { initializers.append((name, dims, values)) }

    func tensor(_ w: inout ProtoWriter, name: String, dims: [Int], floats: [Float]) {
        w.packedInts(1, dims.map(Int64.init))
        w.int(2, 1)
        w.string(8, name)
        if floatDataEncoding {
            var p = ProtoWriter(); for f in floats { withUnsafeBytes(of: f.bitPattern.littleEndian) { p.bytes += $0 } }
            w.bytes(4, p.bytes)
        } else {
            var raw: [UInt8] = []
            for f in floats { withUnsafeBytes(of: f.bitPattern.littleEndian) { raw += $0 } }
            w.bytes(9, raw)
        }
    }

    func serialized() -> Data {
        var m = ProtoWriter()
        m.int(1, 7)
        m.string(2, "fpnstream-tests")
        m.message(8) { o in o.string(1, ""); o.int(2, opset) }
        for (k, v) in metadata { m.message(14) { e in e.string(1, k); e.string(2, v) } }
        m.message(7) { g in
            for n in nodes {
                g.message(1) { p in
                    for i in n.inputs { p.string(1, i) }
                    for o in n.outputs { p.string(2, o) }
                    if !n.name.isEmpty { p.string(3, n.name) }
                    p.string(4, n.op)
                    for (name, a) in n.attrs {
                        p.message(5) { at in
                            at.string(1, name)
                            switch a {
                            case .int(let v): at.int(3, v); at.int(20, 2)
                            case .float(let v): at.float(2, v); at.int(20, 1)
                            case .string(let s): at.string(4, s); at.int(20, 3)
                            case .ints(let v): at.packedInts(8, v); at.int(20, 7)
                            case .floats(let v): for f in v { at.float(7, f) }; at.int(20, 6)
                            }
                        }
                    }
                }
            }
            g.string(2, "test")
            for (name, dims, vals) in initializers {
                g.message(5) { t in tensor(&t, name: name, dims: dims, floats: vals) }
            }
            for (name, dims, vals) in intInitializers {
                g.message(5) { t in
                    t.packedInts(1, dims.map(Int64.init)); t.int(2, 7); t.string(8, name); t.packedInts(7, vals)
                }
            }
            g.message(11) { v in
                v.string(1, input)
                v.message(2) { tp in
                    tp.message(1) { tt in
                        tt.int(1, 1)
                        tt.message(2) { sh in for d in inputDims { sh.message(1) { dm in dm.int(1, d) } } }
                    }
                }
            }
            for o in outputs { g.message(12) { v in v.string(1, o) } }
        }
        return Data(m.bytes)
    }
}

/// Deterministic pseudo-random values for weights and inputs.
struct TestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> Float {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(state % 2_000_001) / 1_000_000 - 1
    }
    mutating func array(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
}
