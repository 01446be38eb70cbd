import COpenBLAS
import Dispatch
import Foundation
import Synchronization

/// The number of threads IBKE computes with.
///
/// IBKE has one pool of threads: ``parallelFor(_:_:)``. OpenBLAS itself runs single-threaded
/// and large matrix products are split across the pool by ``MatMul`` — OpenBLAS's own workers
/// spin (`sched_yield`) for a long time after each call and would compete with the pool for
/// the cores between matmuls (measured: 15% of a 512-token prefill went to scheduling).
public enum ComputeThreads {
    nonisolated(unsafe) private static var current = ProcessInfo.processInfo.activeProcessorCount

    /// OpenBLAS switched to one thread, once, before the first BLAS call.
    static let singleThreadedBLAS: Void = openblas_set_num_threads(1)

    /// Threads used by parallel loops (and so by matrix products).
    public static var count: Int { current }

    /// Sets the thread count (at least 1).
    public static func set(_ n: Int) {
        current = max(1, n)
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
/// By default the chunks are split into at most `ComputeThreads.count` contiguous ranges, so the
/// assignment depends only on the thread count. With `dynamic: true` each thread takes the next
/// unclaimed chunk, which balances chunks of unequal cost (attention's causal blocks); use it
/// only when each chunk's result does not depend on which thread runs it.
/// The body must be safe to run concurrently on disjoint chunks. Loops do not nest: inside a
/// running loop (from any thread) another `parallelFor` runs its chunks serially.
public func parallelFor(_ chunks: Int, dynamic: Bool = false, _ body: (Int) -> Void) {
    let threads = min(ComputeThreads.count, chunks)
    if threads <= 1 || activeParallelLoops.load(ordering: .relaxed) > 0 {
        for i in 0..<chunks { body(i) }
        return
    }
    activeParallelLoops.add(1, ordering: .relaxed)
    defer { activeParallelLoops.subtract(1, ordering: .relaxed) }
    let next = Atomic<Int>(0)
    withoutActuallyEscaping(body) { escapable in
        let box = UncheckedBox(escapable)
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            if dynamic {
                while true {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    if i >= chunks { break }
                    box.value(i)
                }
            } else {
                let start = chunks * t / threads
                let end = chunks * (t + 1) / threads
                for i in start..<end { box.value(i) }
            }
        }
    }
}
