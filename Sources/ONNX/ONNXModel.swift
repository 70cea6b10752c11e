import Foundation

/// An ONNX model as read from its protobuf file (`onnx.proto`'s `ModelProto`), decoded field by field
/// from the wire format. Only what inference needs is kept; unknown fields are skipped.
public struct ONNXModel: Sendable {
    /// `ir_version`.
    public var irVersion: Int64
    /// Operator set versions by domain (`""` is the default ONNX domain, also written `ai.onnx`).
    public var opsets: [String: Int64]
    /// `producer_name` and `producer_version`, for messages.
    public var producer: String
    /// The main graph.
    public var graph: ONNXGraph
    /// `metadata_props` (key → value), e.g. Ultralytics' `names`, `imgsz`, `task`, `stride`.
    public var metadata: [String: String] = [:]

    /// The default-domain opset version (ONNX's default is 1 when absent).
    public var opset: Int64 { opsets[""] ?? opsets["ai.onnx"] ?? 1 }
}

/// `GraphProto`: nodes in topological order, constant initializers and typed inputs/outputs.
public struct ONNXGraph: Sendable {
    public var name: String
    public var nodes: [ONNXNode]
    /// Initializers by name (weights and other constants).
    public var initializers: [String: ONNXTensor]
    /// Declared inputs, in order (may include initializers in IR < 4 files; those are not real inputs).
    public var inputs: [ONNXValueInfo]
    /// Declared outputs, in order.
    public var outputs: [ONNXValueInfo]

    /// Inputs that are not initializers: what the caller must feed.
    public var realInputs: [ONNXValueInfo] { inputs.filter { initializers[$0.name] == nil } }
}

/// `NodeProto`.
public struct ONNXNode: Sendable {
    /// Node name; may be empty in files, so messages use `label`.
    public var name: String
    public var opType: String
    public var domain: String
    /// Input value names; an empty name is an omitted optional input.
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [String: ONNXAttribute]

    /// `name` if set, else `opType(first output)`: how errors refer to the node.
    public var label: String { name.isEmpty ? "\(opType)(\(outputs.first ?? "?"))" : name }
}

/// `AttributeProto`, reduced to the value kinds ONNX operators use.
public enum ONNXAttribute: Sendable, Equatable {
    case float(Float)
    case int(Int64)
    case string(String)
    case tensor(ONNXTensor)
    case floats([Float])
    case ints([Int64])
    case strings([String])
    /// Graphs, sparse tensors, type protos: kept only as a kind name so an op using them can be refused clearly.
    case other(String)
}

/// `ValueInfoProto` for a tensor: name, element type and shape (a dimension is a number, a symbolic name, or unknown).
public struct ONNXValueInfo: Sendable, Equatable {
    public enum Dim: Sendable, Equatable, CustomStringConvertible {
        case value(Int64)
        case param(String)
        case unknown
        public var description: String {
            switch self {
            case .value(let v): return String(v)
            case .param(let p): return p
            case .unknown: return "?"
            }
        }
    }
    public var name: String
    /// `TensorProto.DataType` code (1 = float32); 0 when not given.
    public var elementType: Int32
    /// nil when the shape is not declared.
    public var dims: [Dim]?
}

/// A constant tensor (`TensorProto`): shape plus float32 or integer values.
public struct ONNXTensor: Sendable, Equatable {
    /// Element storage; float16/64 are widened or narrowed to Float, integer types to Int64.
    public enum Values: Sendable, Equatable {
        case float([Float])
        case int([Int64])
    }
    public var name: String
    /// Dimensions, outermost first (empty for a scalar).
    public var dims: [Int]
    /// `TensorProto.DataType` code as stored in the file.
    public var dataType: Int32
    public var values: Values

    public init(name: String = "", dims: [Int], floats: [Float]) {
        self.name = name; self.dims = dims; self.dataType = ONNXDataType.float; self.values = .float(floats)
    }

    public init(name: String = "", dims: [Int], ints: [Int64]) {
        self.name = name; self.dims = dims; self.dataType = ONNXDataType.int64; self.values = .int(ints)
    }

    /// Element count implied by `dims`.
    public var count: Int { dims.reduce(1, *) }

    /// Values as Float (integers converted).
    public var floats: [Float] {
        switch values {
        case .float(let f): return f
        case .int(let i): return i.map { Float($0) }
        }
    }

    /// Values as Int64 (floats truncated toward zero); nil when a float is NaN, infinite or beyond Int64.
    public var ints: [Int64]? {
        switch values {
        case .float(let f):
            var out: [Int64] = []
            out.reserveCapacity(f.count)
            for v in f {
                guard let i = Int64(exactly: v.rounded(.towardZero)) else { return nil }
                out.append(i)
            }
            return out
        case .int(let i): return i
        }
    }
}

/// `TensorProto.DataType` codes used here.
public enum ONNXDataType {
    public static let float: Int32 = 1, uint8: Int32 = 2, int8: Int32 = 3, uint16: Int32 = 4, int16: Int32 = 5
    public static let int32: Int32 = 6, int64: Int32 = 7, string: Int32 = 8, bool: Int32 = 9, float16: Int32 = 10
    public static let double: Int32 = 11, uint32: Int32 = 12, uint64: Int32 = 13

    static func name(_ t: Int32) -> String {
        let names: [Int32: String] = [0: "undefined", 1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16",
                                      6: "int32", 7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "double",
                                      12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16"]
        return names[t] ?? "type \(t)"
    }
}

// MARK: - Decoding

extension ONNXModel {
    /// Reads and decodes an ONNX file. Throws `ONNXError` naming the file for unreadable, truncated or
    /// non-ONNX input.
    public init(contentsOf url: URL) throws {
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= ONNXLimits.maxFileBytes else {
            throw ONNXError(file: url.path, .tooLarge("file of \(size) bytes (limit \(ONNXLimits.maxFileBytes))"))
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ONNXError(file: url.path, .unreadable(error.localizedDescription))
        }
        do { try self.init(bytes: data) } catch let e as ONNXError {
            throw ONNXError(file: url.path, e.kind)
        }
    }

    /// Decodes a serialized `ModelProto`.
    public init(bytes: Data) throws {
        guard !bytes.isEmpty else { throw ONNXError(.notONNX("the file is empty")) }
        do {
            self = try bytes.withUnsafeBytes { raw in
                var r = ProtoReader(raw)
                return try ONNXModel.decode(&r)
            }
        } catch let e as ProtoError {
            switch e {
            case .truncated(let off, let what):
                throw ONNXError(.notONNX("truncated or not protobuf: \(what) at byte \(off) of \(bytes.count)"))
            case .malformed(let off, let what):
                throw ONNXError(.notONNX("not a valid protobuf: \(what) at byte \(off)"))
            case .tooLarge(let off, let what):
                throw ONNXError(.tooLarge("\(what) at byte \(off)"))
            }
        }
        guard irVersion > 0, !graph.nodes.isEmpty else {
            throw ONNXError(.notONNX("no ir_version or no graph nodes: not an ONNX model"))
        }
    }

    static func decode(_ r: inout ProtoReader) throws -> ONNXModel {
        var m = ONNXModel(irVersion: 0, opsets: [:], producer: "",
                          graph: ONNXGraph(name: "", nodes: [], initializers: [:], inputs: [], outputs: []))
        var producerName = "", producerVersion = ""
        var sawGraph = false
        while let (field, type) = try r.nextField() {
            switch field {
            case 1: try r.expect(type, is: .varint, field: "ir_version"); m.irVersion = try r.int64()
            case 2: try r.expect(type, is: .lengthDelimited, field: "producer_name"); producerName = try r.string()
            case 3: try r.expect(type, is: .lengthDelimited, field: "producer_version"); producerVersion = try r.string()
            case 7:
                try r.expect(type, is: .lengthDelimited, field: "graph")
                var g = try r.message()
                m.graph = try decodeGraph(&g)
                sawGraph = true
            case 8:
                try r.expect(type, is: .lengthDelimited, field: "opset_import")
                var o = try r.message()
                var domain = "", version: Int64 = 1
                while let (f, t) = try o.nextField() {
                    switch f {
                    case 1: try o.expect(t, is: .lengthDelimited, field: "domain"); domain = try o.string()
                    case 2: try o.expect(t, is: .varint, field: "version"); version = try o.int64()
                    default: try o.skip(t)
                    }
                }
                m.opsets[domain] = version
            case 14:
                try r.expect(type, is: .lengthDelimited, field: "metadata_props")
                var e = try r.message()
                var key = "", value = ""
                while let (f, t) = try e.nextField() {
                    switch f {
                    case 1: try e.expect(t, is: .lengthDelimited, field: "metadata key"); key = try e.string()
                    case 2: try e.expect(t, is: .lengthDelimited, field: "metadata value"); value = try e.string()
                    default: try e.skip(t)
                    }
                }
                m.metadata[key] = value
            default: try r.skip(type)
            }
        }
        guard sawGraph else { throw ONNXError(.notONNX("no graph in the model")) }
        m.producer = [producerName, producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        return m
    }

    static func decodeGraph(_ r: inout ProtoReader) throws -> ONNXGraph {
        var g = ONNXGraph(name: "", nodes: [], initializers: [:], inputs: [], outputs: [])
        // Count the nodes before decoding any, so a graph claiming too many is refused without building them. A
        // malformed field ends the count; the decoding below reports it where it is.
        var scan = r, declared = 0
        while let (field, type) = try? scan.nextField(), (try? scan.skip(type)) != nil {
            guard field == 1, type == .lengthDelimited else { continue }
            declared += 1
            guard declared <= ONNXLimits.maxNodes else {
                throw ONNXError(.tooLarge("graph has more than \(ONNXLimits.maxNodes) nodes"))
            }
        }
        g.nodes.reserveCapacity(declared)
        while let (field, type) = try r.nextField() {
            switch field {
            case 1:
                try r.expect(type, is: .lengthDelimited, field: "node")
                guard g.nodes.count < ONNXLimits.maxNodes else {
                    throw ONNXError(.tooLarge("graph has more than \(ONNXLimits.maxNodes) nodes"))
                }
                var n = try r.message()
                g.nodes.append(try decodeNode(&n))
            case 2: try r.expect(type, is: .lengthDelimited, field: "graph.name"); g.name = try r.string()
            case 5:
                try r.expect(type, is: .lengthDelimited, field: "initializer")
                var t = try r.message()
                let tensor = try decodeTensor(&t)
                g.initializers[tensor.name] = tensor
            case 11, 12:
                try r.expect(type, is: .lengthDelimited, field: "input/output")
                var v = try r.message()
                let info = try decodeValueInfo(&v)
                if field == 11 { g.inputs.append(info) } else { g.outputs.append(info) }
            case 15:
                throw ONNXError(.unsupportedModel("sparse initializers are not supported"))
            default: try r.skip(type)
            }
        }
        return g
    }

    static func decodeNode(_ r: inout ProtoReader) throws -> ONNXNode {
        var n = ONNXNode(name: "", opType: "", domain: "", inputs: [], outputs: [], attributes: [:])
        while let (field, type) = try r.nextField() {
            switch field {
            case 1: try r.expect(type, is: .lengthDelimited, field: "node.input"); n.inputs.append(try r.string())
            case 2: try r.expect(type, is: .lengthDelimited, field: "node.output"); n.outputs.append(try r.string())
            case 3: try r.expect(type, is: .lengthDelimited, field: "node.name"); n.name = try r.string()
            case 4: try r.expect(type, is: .lengthDelimited, field: "node.op_type"); n.opType = try r.string()
            case 7: try r.expect(type, is: .lengthDelimited, field: "node.domain"); n.domain = try r.string()
            case 5:
                try r.expect(type, is: .lengthDelimited, field: "node.attribute")
                var a = try r.message()
                let (name, value) = try decodeAttribute(&a)
                n.attributes[name] = value
            default: try r.skip(type)
            }
        }
        return n
    }

    static func decodeAttribute(_ r: inout ProtoReader) throws -> (String, ONNXAttribute) {
        var name = ""
        var kind: Int64 = 0
        var f: Float = 0, i: Int64 = 0, s: [UInt8] = [], t: ONNXTensor?
        var floats: [Float] = [], ints: [Int64] = [], strings: [String] = []
        var other: String?
        while let (field, type) = try r.nextField() {
            switch field {
            case 1: try r.expect(type, is: .lengthDelimited, field: "attribute.name"); name = try r.string()
            case 20: try r.expect(type, is: .varint, field: "attribute.type"); kind = try r.int64()
            case 2: try r.expect(type, is: .fixed32, field: "attribute.f"); f = try r.float()
            case 3: try r.expect(type, is: .varint, field: "attribute.i"); i = try r.int64()
            case 4: try r.expect(type, is: .lengthDelimited, field: "attribute.s"); s = try r.data()
            case 5:
                try r.expect(type, is: .lengthDelimited, field: "attribute.t")
                var m = try r.message()
                t = try decodeTensor(&m)
            case 7: try r.repeatedFloat(type, into: &floats)
            case 8: try r.repeatedInt64(type, into: &ints)
            case 9:
                try r.expect(type, is: .lengthDelimited, field: "attribute.strings")
                strings.append(try r.string())
            case 6, 10, 11, 14, 15, 22, 23:
                other = [6: "graph", 10: "tensors", 11: "graphs", 14: "type_proto", 15: "type_protos",
                         22: "sparse_tensor", 23: "sparse_tensors"][field]
                try r.skip(type)
            default: try r.skip(type)
            }
        }
        let value: ONNXAttribute
        switch kind {
        case 1: value = .float(f)
        case 2: value = .int(i)
        case 3: value = .string(String(decoding: s, as: UTF8.self))
        case 4:
            guard let t else { throw ONNXError(.notONNX("attribute \(name) of type TENSOR has no tensor")) }
            value = .tensor(t)
        case 6: value = .floats(floats)
        case 7: value = .ints(ints)
        case 8: value = .strings(strings)
        case 0:
            // IR < 2 files may omit `type`: infer it from which field was set.
            if let t { value = .tensor(t) } else if !ints.isEmpty { value = .ints(ints) }
            else if !floats.isEmpty { value = .floats(floats) } else if !s.isEmpty {
                value = .string(String(decoding: s, as: UTF8.self))
            } else if let other { value = .other(other) } else { value = .int(i) }
        default: value = .other(other ?? "attribute type \(kind)")
        }
        return (name, value)
    }

    static func decodeValueInfo(_ r: inout ProtoReader) throws -> ONNXValueInfo {
        var v = ONNXValueInfo(name: "", elementType: 0, dims: nil)
        while let (field, type) = try r.nextField() {
            switch field {
            case 1: try r.expect(type, is: .lengthDelimited, field: "value_info.name"); v.name = try r.string()
            case 2:
                try r.expect(type, is: .lengthDelimited, field: "value_info.type")
                var tp = try r.message()
                while let (f, t) = try tp.nextField() {
                    guard f == 1 else { try tp.skip(t); continue }  // tensor_type only
                    try tp.expect(t, is: .lengthDelimited, field: "tensor_type")
                    var tt = try tp.message()
                    while let (f2, t2) = try tt.nextField() {
                        switch f2 {
                        case 1: try tt.expect(t2, is: .varint, field: "elem_type"); v.elementType = Int32(truncatingIfNeeded: try tt.int64())
                        case 2:
                            try tt.expect(t2, is: .lengthDelimited, field: "shape")
                            var sh = try tt.message()
                            var dims: [ONNXValueInfo.Dim] = []
                            while let (f3, t3) = try sh.nextField() {
                                guard f3 == 1 else { try sh.skip(t3); continue }
                                try sh.expect(t3, is: .lengthDelimited, field: "shape.dim")
                                var d = try sh.message()
                                var dim = ONNXValueInfo.Dim.unknown
                                while let (f4, t4) = try d.nextField() {
                                    switch f4 {
                                    case 1: try d.expect(t4, is: .varint, field: "dim_value"); dim = .value(try d.int64())
                                    case 2: try d.expect(t4, is: .lengthDelimited, field: "dim_param"); dim = .param(try d.string())
                                    default: try d.skip(t4)
                                    }
                                }
                                dims.append(dim)
                                guard dims.count <= ONNXLimits.maxRank else {
                                    throw ONNXError(.tooLarge("value \(v.name) has more than \(ONNXLimits.maxRank) dims"))
                                }
                            }
                            v.dims = dims
                        default: try tt.skip(t2)
                        }
                    }
                }
            default: try r.skip(type)
            }
        }
        return v
    }

    static func decodeTensor(_ r: inout ProtoReader) throws -> ONNXTensor {
        var name = ""
        var dims: [Int64] = []
        var dataType: Int32 = 0
        var floatData: [Float] = [], int64Data: [Int64] = [], int32Data: [Int64] = [], doubleData: [Double] = []
        var raw: [UInt8]?
        var external = false
        while let (field, type) = try r.nextField() {
            switch field {
            case 1: try r.repeatedInt64(type, into: &dims)
            case 2: try r.expect(type, is: .varint, field: "tensor.data_type"); dataType = Int32(truncatingIfNeeded: try r.int64())
            case 4: try r.repeatedFloat(type, into: &floatData)
            case 5: try r.repeatedInt64(type, into: &int32Data)
            case 7: try r.repeatedInt64(type, into: &int64Data)
            case 8: try r.expect(type, is: .lengthDelimited, field: "tensor.name"); name = try r.string()
            case 9: try r.expect(type, is: .lengthDelimited, field: "tensor.raw_data"); raw = try r.data()
            case 10: try r.repeatedDouble(type, into: &doubleData)
            case 14: try r.expect(type, is: .varint, field: "data_location"); external = try r.varint() == 1
            default: try r.skip(type)
            }
        }
        guard !external else {
            throw ONNXError(.unsupportedModel("tensor \(name) uses external data (a separate weights file); "
                                              + "save the model with its weights inside the .onnx file"))
        }
        let count = try ONNXLimits.elementCount(dims, of: "tensor \(name)")
        let shape = dims.map { Int($0) }
        var t = ONNXTensor(name: name, dims: shape, floats: [])
        t.dataType = dataType
        let data = TensorData(raw: raw, floats: floatData, int32s: int32Data, int64s: int64Data, doubles: doubleData)
        t.values = try tensorValues(data, dataType: dataType, count: count, name: name, shape: shape)
        return t
    }

    /// A TensorProto's data fields as read (at most one of them is normally set).
    struct TensorData {
        var raw: [UInt8]?
        var floats: [Float], int32s: [Int64], int64s: [Int64], doubles: [Double]
    }

    /// The values of a tensor of `count` elements of `dataType` from its raw or typed data: float16/64 become
    /// Float, integer types Int64; an element type no op reads stays empty.
    static func tensorValues(_ data: TensorData, dataType: Int32, count: Int, name: String,
                             shape: [Int]) throws -> ONNXTensor.Values {
        func sizeCheck(_ got: Int) throws {
            guard got == count else {
                throw ONNXError(.notONNX("tensor \(name) has \(got) values for shape \(shape)"))
            }
        }
        switch dataType {
        case ONNXDataType.float:
            if let raw = data.raw {
                try sizeCheck(raw.count / 4)
                guard raw.count == count * 4 else { throw ONNXError(.notONNX("tensor \(name): raw_data of \(raw.count) bytes")) }
                return .float(raw.withUnsafeBytes { b in
                    (0..<count).map { Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
                })
            } else {
                try sizeCheck(data.floats.count)
                return .float(data.floats)
            }
        case ONNXDataType.double:
            if let raw = data.raw {
                guard raw.count == count * 8 else { throw ONNXError(.notONNX("tensor \(name): raw_data of \(raw.count) bytes")) }
                return .float(raw.withUnsafeBytes { b in
                    (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))) }
                })
            } else {
                try sizeCheck(data.doubles.count)
                return .float(data.doubles.map { Float($0) })
            }
        case ONNXDataType.float16:
            if let raw = data.raw {
                guard raw.count == count * 2 else { throw ONNXError(.notONNX("tensor \(name): raw_data of \(raw.count) bytes")) }
                return .float(raw.withUnsafeBytes { b in
                    (0..<count).map { halfToFloat(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
                })
            } else {
                try sizeCheck(data.int32s.count)
                return .float(data.int32s.map { halfToFloat(UInt16(truncatingIfNeeded: $0)) })
            }
        case ONNXDataType.int64, ONNXDataType.int32, ONNXDataType.int8, ONNXDataType.uint8, ONNXDataType.int16,
             ONNXDataType.uint16, ONNXDataType.bool:
            let width: Int = [ONNXDataType.int64: 8, ONNXDataType.int32: 4, ONNXDataType.int16: 2,
                              ONNXDataType.uint16: 2][dataType] ?? 1
            let signed = dataType != ONNXDataType.uint8 && dataType != ONNXDataType.uint16 && dataType != ONNXDataType.bool
            if let raw = data.raw {
                guard raw.count == count * width else { throw ONNXError(.notONNX("tensor \(name): raw_data of \(raw.count) bytes")) }
                return .int((0..<count).map { k in
                    var v: UInt64 = 0
                    for j in 0..<width { v |= UInt64(raw[k * width + j]) << (8 * UInt64(j)) }
                    if signed && width < 8 && v & (1 << (UInt64(width) * 8 - 1)) != 0 { v |= ~0 << (UInt64(width) * 8) }
                    return Int64(bitPattern: v)
                })
            } else {
                let src = dataType == ONNXDataType.int64 ? data.int64s : data.int32s
                try sizeCheck(src.count)
                return .int(src)
            }
        default:
            // Kept empty: refused only if an op actually uses it.
            return .float([])
        }
    }
}

/// IEEE 754 half → single.
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    let exp = Int((h >> 10) & 0x1f)
    let frac = UInt32(h & 0x3ff)
    if exp == 0 {
        return (sign != 0 ? -1 : 1) * Float(frac) * Float(sign: .plus, exponent: -24, significand: 1)
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (frac << 13)) }
    return Float(bitPattern: sign | (UInt32(exp - 15 + 127) << 23) | (frac << 13))
}
