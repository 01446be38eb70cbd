import COpenBLAS
import Dispatch
import Foundation
import Synchronization

/// The number of threads IBKE computes with, shared by ``parallelFor(_:_:)`` and OpenBLAS.
///
/// Our own threads and OpenBLAS's never nest: ``parallelFor(_:_:)`` switches OpenBLAS to one
/// thread for the duration of the loop and restores it afterwards, so a BLAS call made inside
/// a parallel body runs on the calling thread only.
public enum ComputeThreads {
    nonisolated(unsafe) private static var current = ProcessInfo.processInfo.activeProcessorCount

    /// Threads used by parallel loops and BLAS.
    public static var count: Int { current }

    /// Sets the thread count for parallel loops and BLAS (at least 1).
    public static func set(_ n: Int) {
        current = max(1, n)
        openblas_set_num_threads(Int32(current))
    }
}

/// Parallel loops currently running; a loop started while one runs executes serially.
private let activeParallelLoops = Atomic<Int>(0)

private final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Runs `body(chunk)` for `chunk` in `0..<chunks`, spread over ``ComputeThreads/count`` threads.
///
/// Work is split into at most `ComputeThreads.count` contiguous ranges of chunks, so the
/// assignment (and thus floating-point results) depends only on the thread count.
/// The body must be safe to run concurrently on disjoint chunks. Loops do not nest: inside a
/// running loop (from any thread) another `parallelFor` runs its chunks serially.
public func parallelFor(_ chunks: Int, _ body: (Int) -> Void) {
    let threads = min(ComputeThreads.count, chunks)
    if threads <= 1 || activeParallelLoops.load(ordering: .relaxed) > 0 {
        for i in 0..<chunks { body(i) }
        return
    }
    activeParallelLoops.add(1, ordering: .relaxed)
    openblas_set_num_threads(1)
    defer {
        openblas_set_num_threads(Int32(ComputeThreads.count))
        activeParallelLoops.subtract(1, ordering: .relaxed)
    }
    withoutActuallyEscaping(body) { escapable in
        let box = UncheckedBox(escapable)
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            let start = chunks * t / threads
            let end = chunks * (t + 1) / threads
            for i in start..<end { box.value(i) }
        }
    }
}
