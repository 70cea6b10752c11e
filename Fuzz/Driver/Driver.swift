// Two builds of one file:
// - scripts/fuzz compiles it with `-sanitize=fuzzer,address -D FUZZING`: the entry point runs libFuzzer's driver
//   over the target named by FPNSTREAM_FUZZ_TARGET;
// - the ordinary build makes `fpnstream-fuzz TARGET FILE|DIR...`, which replays inputs once each (how a crash
//   input is checked after its fix, and how the committed corpora are run in tests).
import Foundation

#if FUZZING
typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: FuzzCallback) -> Int32

/// SwiftPM links an executable's `main` to this name; it hands the run to libFuzzer.
@_cdecl("fpnstream_fuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        FuzzTarget.fromEnvironment.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}
#else
@main
enum ReplayDriver {
    static func main() {
        let arguments = CommandLine.arguments
        guard arguments.count >= 3, let target = FuzzTarget.all[arguments[1]] else {
            let names = FuzzTarget.all.keys.sorted().joined(separator: ", ")
            FileHandle.standardError.write(Data("usage: fpnstream-fuzz TARGET FILE|DIR...; targets: \(names)\n".utf8))
            exit(2)
        }
        var files: [String] = []
        for path in arguments.dropFirst(2) {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("fpnstream-fuzz: \(path): no such file\n".utf8))
                exit(2)
            }
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().map { "\(path)/\($0)" }
            } else {
                files.append(path)
            }
        }
        for file in files {
            let data = FileManager.default.contents(atPath: file) ?? Data()
            data.withUnsafeBytes { target.run($0) }
        }
        print("fpnstream-fuzz \(arguments[1]): replayed \(files.count) input(s) without a crash")
    }
}
#endif
