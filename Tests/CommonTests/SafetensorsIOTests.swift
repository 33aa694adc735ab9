import Testing
@testable import Common

@Suite("JSON parser")
struct JSONParserTests {
    @Test func values() throws {
        let v = try JSONParser.parse(#"{"a":[1,-2,3.5,1e3,true,false,null,"x\n\u00e9\ud83d\ude00"],"b":{}}"#)
        #expect(v["a"]?.arrayValue?.count == 8)
        #expect(v["a"]?.arrayValue?[0] == .int(1))
        #expect(v["a"]?.arrayValue?[1] == .int(-2))
        #expect(v["a"]?.arrayValue?[2] == .double(3.5))
        #expect(v["a"]?.arrayValue?[3] == .double(1000))
        #expect(v["a"]?.arrayValue?[7] == .string("x\né😀"))
        #expect(v["b"] == .object(JSONObject()))
    }

    @Test func integersAreExact() throws {
        #expect(try JSONParser.parse("9223372036854775807") == .int(Int.max))
        #expect(try JSONParser.parse("-9223372036854775808") == .int(Int.min))
        #expect(try JSONParser.parse("9223372036854775808") == .double(9223372036854775808))
    }

    @Test("keeps key order and round-trips", arguments: [
        #"{"z":1,"a":[true,null],"m":{"x":"y"}}"#, #"[]"#, #"{"s":"quote \" backslash \\ tab \t"}"#, #"[-0.5,1e-05,123456789012]"#,
    ])
    func roundTrip(_ text: String) throws {
        let v = try JSONParser.parse(text)
        #expect(try JSONParser.parse(v.serialized()) == v)
        #expect(try JSONParser.parse(v.serialized(indent: 2)) == v)
    }

    @Test("refuses", arguments: ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "+1", "NaN", "[1] x", "\"\\u12\"", "{\"a\" 1}", "tru", "\"\u{1}\""])
    func refuses(_ text: String) {
        #expect(throws: JSONError.self) { try JSONParser.parse(text) }
    }

    @Test func duplicateKeys() throws {
        #expect(throws: JSONError.self) { try JSONParser.parse(#"{"a":1,"a":2}"#) }
        #expect(try JSONParser.parse(#"{"a":1,"a":2}"#, rejectDuplicateKeys: false)["a"] == .int(1))
    }
}

@Suite("safetensors writer and reader")
struct SafetensorsIOTests {
    @Test("streamed file reads back, header 8-byte aligned, atomic")
    func roundTrip() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let path = dir + "/m.safetensors"
        let w = try SafetensorsWriter(path: path, tensors: [
            TensorSpec(name: "x", dtype: .f32, shape: [2, 2]),
            TensorSpec(name: "empty", dtype: .bf16, shape: [0]),
            TensorSpec(name: "y", dtype: .bf16, shape: [3]),
        ], metadata: [("format", "pt")])
        try w.write([Float(1), 2, 3])
        #expect(!fileExists(path), "nothing under the target name before finish()")
        try w.write([Float(4)] + [])
        try w.write([UInt16(0x3F80), 0x4000, 0x4040])
        try w.finish()
        let f = try SafetensorsFile(path: path)
        #expect(f.header.dataStart % 8 == 0)
        #expect(f.tensors.map(\.name) == ["x", "empty", "y"])
        #expect(f.header.metadata?.first?.value == "pt")
        let x = f.data(f.tensors[0]).bindMemory(to: Float.self)
        #expect(Array(x) == [1, 2, 3, 4])
        #expect(listDirectory(dir) == ["m.safetensors"], "no temporary file left")
    }

    @Test("output reaches the file in pieces that end on 2 MiB offsets, bytes unchanged")
    func alignedWrites() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let path = dir + "/out.bin"
        let f = try AtomicFile(path: path)
        var pieces: [(Int, Int)] = []
        f.writeObserver = { pieces.append(($0, $1)) }
        // Sizes that cross the buffer and alignment boundaries in every way: tiny, odd, one short of
        // 2 MiB, several MiB at once from an unaligned and then an aligned offset.
        let mib = 1 << 20
        let sizes = [8, 1_234_567, 2 * mib - 1, 1, 5 * mib + 3, 3, 9 * mib, 2 * mib - 1_234_582, 6 * mib, 777]
        var expected: [UInt8] = []
        var rng = SplitMix(seed: 0x9E37_79B9_7F4A_7C15)
        for n in sizes {
            let chunk = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 56) }
            expected += chunk
            try f.write(chunk)
        }
        try f.commit()
        let back = try MappedFile(path: path)
        #expect(back.count == expected.count)
        #expect(Array(back.bytes) == expected)
        #expect(pieces.map(\.1).reduce(0, +) == expected.count)
        var offset = 0
        for (i, (at, n)) in pieces.enumerated() {
            #expect(at == offset)
            offset += n
            if i < pieces.count - 1 {
                #expect(offset % (2 * mib) == 0, "piece \(i) ends at \(offset)")
            }
        }
        #expect(pieces.dropLast().allSatisfy { $0.1 >= 2 * mib }, "\(pieces.map(\.1))")
    }

    @Test("a writer dropped before finish leaves nothing")
    func abandoned() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        do {
            let w = try SafetensorsWriter(path: dir + "/m.safetensors", tensors: [TensorSpec(name: "x", dtype: .f32, shape: [4])])
            try w.write([Float(1)])
            #expect(throws: WriterError.self) { try w.finish() }
        }
        #expect(listDirectory(dir).isEmpty)
    }

    @Test("writer refuses too many bytes and duplicate names")
    func writerErrors() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        #expect(throws: WriterError.self) {
            _ = try SafetensorsWriter(path: dir + "/a", tensors: [TensorSpec(name: "x", dtype: .f32, shape: [1]), TensorSpec(name: "x", dtype: .f32, shape: [1])])
        }
        let w = try SafetensorsWriter(path: dir + "/b", tensors: [TensorSpec(name: "x", dtype: .f32, shape: [1])])
        #expect(throws: WriterError.self) { try w.write([Float(1), 2]) }
    }

    @Test("sharded output: index, shard names, every tensor once")
    func sharded() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let specs = (0..<7).map { TensorSpec(name: "model.layers.\($0).w", dtype: .f32, shape: [4, 8]) }  // 128 B each
        let w = try ShardedSafetensorsWriter(directory: dir, tensors: specs, maxShardSize: 300)
        for i in 0..<7 { try w.write([Float](repeating: Float(i), count: 32)) }
        try w.finish()
        #expect(listDirectory(dir) == ["model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                        "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                                        "model.safetensors.index.json"])
        let ck = try Checkpoint(path: dir)
        #expect(ck.kind == .shardedSafetensors)
        #expect(ck.tensors.map(\.name) == specs.map(\.name))
        let index = try JSONParser.parse(readSmallFile(dir + "/model.safetensors.index.json"))
        #expect(index["metadata"]?["total_size"] == .int(7 * 128))
        for (i, t) in ck.tensors.enumerated() {
            #expect(ck.data(t).bindMemory(to: Float.self).allSatisfy { $0 == Float(i) })
        }
    }

    @Test("one shard: plain model.safetensors, no index")
    func singleShard() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let w = try ShardedSafetensorsWriter(directory: dir, tensors: [TensorSpec(name: "a", dtype: .u8, shape: [3])], maxShardSize: 1 << 30)
        try w.write([UInt8(1), 2, 3])
        try w.finish()
        #expect(listDirectory(dir) == ["model.safetensors"])
    }

    @Test("OutputDirectory stages and commits; abandoned staging disappears")
    func outputDirectory() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        do {
            let out = try OutputDirectory(path: dir + "/out")
            try writeSmallFile(out.stagedPath("a.txt"), "x")
            #expect(!fileExists(dir + "/out"))
        }
        #expect(listDirectory(dir).isEmpty)
        let out = try OutputDirectory(path: dir + "/out")
        try writeSmallFile(out.stagedPath("a.txt"), "x")
        try out.commit()
        #expect(listDirectory(dir + "/out") == ["a.txt"])
        // Missing parents are created, as `-o out/model` users expect.
        let nested = try OutputDirectory(path: dir + "/x/y/model")
        try writeSmallFile(nested.stagedPath("b.txt"), "y")
        try nested.commit()
        #expect(listDirectory(dir + "/x/y/model") == ["b.txt"])
    }
}

@Suite("checkpoint opening")
struct CheckpointTests {
    static func shardedDirectory() throws -> String {
        let dir = SafetensorsFixture.temporaryDirectory()
        let w = try ShardedSafetensorsWriter(directory: dir, tensors: [
            TensorSpec(name: "a", dtype: .f32, shape: [64]), TensorSpec(name: "b", dtype: .f32, shape: [64]),
        ], maxShardSize: 256)
        try w.write([Float](repeating: 1, count: 128))
        try w.finish()
        return dir
    }

    @Test func indexPathAndDirectoryAgree() throws {
        let dir = try Self.shardedDirectory()
        defer { removeTree(dir) }
        let a = try Checkpoint(path: dir)
        let b = try Checkpoint(path: dir + "/model.safetensors.index.json")
        #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
        #expect(a.files.count == 2)
    }

    @Test func missingShard() throws {
        let dir = try Self.shardedDirectory()
        defer { removeTree(dir) }
        removeTree(dir + "/model-00002-of-00002.safetensors")
        do {
            _ = try Checkpoint(path: dir)
            Issue.record("opened with a missing shard")
        } catch let e as any QKitError {
            #expect(e.exitStatus == .noInput)
        }
    }

    @Test("index naming the wrong shard, a missing entry, or a path component is refused", arguments: [
        #"{"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#,
        #"{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}"#,
        #"{"weight_map":{"a":"../model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#,
        #"{"weight_map":{"a":1}}"#, #"{"metadata":{}}"#, "not json",
    ])
    func badIndex(_ index: String) throws {
        let dir = try Self.shardedDirectory()
        defer { removeTree(dir) }
        try writeSmallFile(dir + "/model.safetensors.index.json", index)
        do {
            _ = try Checkpoint(path: dir)
            Issue.record("accepted a bad index")
        } catch let e as any QKitError {
            #expect(e.exitStatus == .dataError)
        }
    }

    @Test func duplicateAcrossFiles() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        let f = SafetensorsFixture.file([(name: "a", dtype: .u8, shape: [1], bytes: [1])])
        SafetensorsFixture.write(f, to: dir + "/x.safetensors")
        SafetensorsFixture.write(f, to: dir + "/y.safetensors")
        #expect(throws: (any Error).self) { try Checkpoint(path: dir) }
    }

    @Test func emptyDirectoryAndMissingFile() throws {
        let dir = SafetensorsFixture.temporaryDirectory()
        defer { removeTree(dir) }
        do { _ = try Checkpoint(path: dir); Issue.record("opened an empty directory") } catch let e as any QKitError {
            #expect(e.exitStatus == .noInput)
        }
        do { _ = try Checkpoint(path: dir + "/nope.safetensors"); Issue.record("opened a missing file") } catch let e as any QKitError {
            #expect(e.exitStatus == .noInput)
        }
    }

    @Test func naturalOrder() {
        let names = ["model.layers.10.w", "model.layers.2.w", "lm_head.weight", "model.layers.1.w", "model.layers.2.b"]
        #expect(names.sorted(by: naturalLess) == ["lm_head.weight", "model.layers.1.w", "model.layers.2.b", "model.layers.2.w", "model.layers.10.w"])
    }
}
