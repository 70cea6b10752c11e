import CBLAS

/// OpenBLAS configuration as seen at run time.
public enum BLASInfo {
    /// `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64".
    public static var config: String { String(cString: openblas_get_config()) }
    /// Threads OpenBLAS will use.
    public static var threads: Int { Int(openblas_get_num_threads()) }
}
