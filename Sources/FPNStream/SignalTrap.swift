import Dispatch
import Foundation

/// SIGINT/SIGTERM handling without async-signal-safety hazards: the default action is ignored and Dispatch
/// delivers the signal as an event on a queue, where ordinary code (stop the pipeline) may run.
/// The first signal calls `onSignal`; a second one exits at once with 128 + signal (outputs not finalized).
public final class SignalTrap: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var received: Int32?

    /// The first signal received, if any.
    public var signal: Int32? { lock.lock(); defer { lock.unlock() }; return received }

    public init(signals: [Int32] = [SIGINT, SIGTERM], onSignal: @escaping @Sendable (Int32) -> Void) {
        let queue = DispatchQueue(label: "fpnstream.signals")
        for sig in signals {
            Foundation.signal(sig, SIG_IGN)  // otherwise the default action kills the process before Dispatch sees it
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock()
                let first = self.received == nil
                if first { self.received = sig }
                self.lock.unlock()
                if first {
                    onSignal(sig)
                } else {
                    FileHandle.standardError.write(Data("\nfpnstream: second signal, exiting without finalizing\n".utf8))
                    _exit(128 + sig)
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    deinit { sources.forEach { $0.cancel() } }
}
