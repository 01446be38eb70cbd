import COpenBLAS
import Dispatch
import Foundation
import Synchronization

/// The number of threads IBKE computes with.
///
/// IBKE has one pool of threads, behind ``parallelFor(_:dynamic:_:)``. OpenBLAS itself runs single-threaded
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

/// Runs `body(chunk)` for `chunk` in `0..<chunks`, spread over ``ComputeThreads/count`` threads.
///
/// By default the chunks are split into at most `ComputeThreads.count` contiguous ranges, so the
/// assignment depends only on the thread count. With `dynamic: true` each thread takes the next
/// unclaimed chunk, which balances chunks of unequal cost (attention's causal blocks); use it
/// only when each chunk's result does not depend on which thread runs it.
/// The body must be safe to run concurrently on disjoint chunks. Loops do not nest: inside a
/// running loop (from any thread), or while another thread runs one, `parallelFor` runs its
/// chunks serially.
public func parallelFor(_ chunks: Int, dynamic: Bool = false, _ body: (Int) -> Void) {
    let threads = min(ComputeThreads.count, chunks)
    guard threads > 1, WorkerPool.shared.claim() else {
        for i in 0..<chunks { body(i) }
        return
    }
    defer { WorkerPool.shared.release() }
    withoutActuallyEscaping(body) { escapable in
        WorkerPool.shared.run(Loop(body: escapable, chunks: chunks, threads: threads, dynamic: dynamic))
    }
}

/// One ``parallelFor(_:dynamic:_:)`` call: `threads` shares of the chunks, each claimed by
/// whichever thread comes first (the caller, or a worker), so a worker still waiting for a core
/// on a busy machine delays nothing; the chunks of share `t` depend only on `t`.
/// `@unchecked Sendable`: `body` is not `@Sendable`; ``parallelFor(_:dynamic:_:)`` requires it to
/// be safe on disjoint chunks, and its caller keeps it alive until no worker is left in the loop.
private final class Loop: @unchecked Sendable {
    let body: (Int) -> Void
    let chunks: Int, threads: Int, dynamic: Bool
    private let nextChunk = Atomic<Int>(0)
    private let nextShare = Atomic<Int>(0)
    let finishedShares = Atomic<Int>(0)

    init(body: @escaping (Int) -> Void, chunks: Int, threads: Int, dynamic: Bool) {
        (self.body, self.chunks, self.threads, self.dynamic) = (body, chunks, threads, dynamic)
    }

    /// Claims and runs shares until none is left.
    func runShares() {
        while true {
            let t = nextShare.wrappingAdd(1, ordering: .relaxed).oldValue
            if t >= threads { return }
            if dynamic {
                while true {
                    let i = nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue
                    if i >= chunks { break }
                    body(i)
                }
            } else {
                for i in (chunks * t / threads)..<(chunks * (t + 1) / threads) { body(i) }
            }
            finishedShares.add(1, ordering: .releasing)
        }
    }
}

/// Worker threads that spin briefly between loops before they sleep.
///
/// A forward pass runs hundreds of short loops (a decoded token: ~150 matrix-vector products
/// of 0.1–0.5 ms). Waking a sleeping thread for each, as GCD's `concurrentPerform` did, held
/// two-thread decoding at 18–19 tokens/s on the project's VM (a wake-up there is an
/// inter-processor interrupt); workers that poll for the next loop for up to `spinNanoseconds`
/// start it at once (23–25 tokens/s), and sleep on a condition variable when the process goes
/// quiet. Polling threads yield the core at each poll, but on a machine whose cores are all
/// busy with other processes polling still costs (decode beside three single-threaded jobs:
/// 7.0 against GCD's 9.7 tokens/s); `--threads 1` uses no workers.
/// `@unchecked Sendable`: only the thread holding `busy` writes `loop` and `workerCount`; a worker
/// reads `loop` only while counted in `active`, which the caller waits out before clearing it.
private final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()
    static let spinNanoseconds: UInt64 = 200_000

    /// Set while a loop runs: the pool serves one loop at a time, and a loop inside a loop
    /// (or a loop from another thread meanwhile) runs serially.
    private let busy = Atomic<Bool>(false)
    /// `generation << 16 | threads` of the open loop (threads 0: none open), a new generation
    /// for each change: workers wait for it to change.
    private let announcement = Atomic<Int>(0)
    /// Workers between checking the announcement and leaving the loop; the caller waits for 0
    /// after closing it, so no worker touches a loop after its call returns.
    private let active = Atomic<Int>(0)
    /// Workers blocked (or about to block) on `wakeUp`.
    private let sleepers = Atomic<Int>(0)
    private let wakeUp = NSCondition()
    /// The open loop, unretained: the caller keeps it alive until no worker is `active`.
    nonisolated(unsafe) private var loop: Unmanaged<Loop>?
    nonisolated(unsafe) private var workerCount = 0

    func claim() -> Bool {
        busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    }

    func release() {
        busy.store(false, ordering: .releasing)
    }

    /// Runs `loop` on the calling thread and up to `loop.threads − 1` workers.
    func run(_ loop: Loop) {
        while workerCount < loop.threads - 1 {
            workerCount += 1
            let index = workerCount
            let current = announcement.load(ordering: .relaxed)
            let thread = Thread { [self] in work(as: index, after: current) }
            thread.name = "ibke-worker-\(index)"
            thread.start()
        }
        self.loop = Unmanaged.passUnretained(loop)
        announce(threads: loop.threads)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            wakeUp.lock()
            wakeUp.broadcast()
            wakeUp.unlock()
        }
        loop.runShares()
        while loop.finishedShares.load(ordering: .acquiring) < loop.threads { sched_yield() }
        announce(threads: 0)
        while active.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
        self.loop = nil
    }

    private func announce(threads: Int) {
        let generation = (announcement.load(ordering: .relaxed) >> 16) + 1
        announcement.store((generation << 16) | threads, ordering: .sequentiallyConsistent)
    }

    /// Worker `index`'s life: wait for a loop; help with it if it is still open; repeat.
    private func work(as index: Int, after announced: Int) {
        var seen = announced
        while true {
            seen = waitForNewLoop(after: seen)
            guard index < (seen & 0xFFFF) else { continue }
            active.add(1, ordering: .sequentiallyConsistent)
            if announcement.load(ordering: .sequentiallyConsistent) == seen, let loop {
                loop.takeUnretainedValue().runShares()
            }
            active.subtract(1, ordering: .releasing)
        }
    }

    /// The announcement after `seen`: polled for up to `spinNanoseconds`, then waited for.
    private func waitForNewLoop(after seen: Int) -> Int {
        let deadline = DispatchTime.now().uptimeNanoseconds + Self.spinNanoseconds
        var polls = 0
        while true {
            let current = announcement.load(ordering: .acquiring)
            if current != seen { return current }
            sched_yield()
            polls += 1
            if polls % 64 == 0, DispatchTime.now().uptimeNanoseconds > deadline { break }
        }
        wakeUp.lock()
        defer { wakeUp.unlock() }
        sleepers.add(1, ordering: .sequentiallyConsistent)
        defer { sleepers.subtract(1, ordering: .sequentiallyConsistent) }
        while true {
            let current = announcement.load(ordering: .sequentiallyConsistent)
            if current != seen { return current }
            wakeUp.wait()
        }
    }
}
