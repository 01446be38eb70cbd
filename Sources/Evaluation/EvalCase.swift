import Editing

/// The benchmark a case comes from; it decides which metrics its probes feed.
public enum BenchmarkKind: String, Sendable, Codable, CaseIterable {
    /// zsRE (MEND format): teacher-forced token accuracy.
    case zsre
    /// CounterFact (ROME or EasyEdit format): probability comparisons (ES/PS/NS).
    case counterfact
    /// MQuAKE: all edits of a case at once, then multi-hop questions.
    case mquake
    /// A user's own JSONL edits (Docs/datasets.md): token accuracy, plus comparisons when
    /// `target_true` is given.
    case custom
}

/// One benchmark case: the edits to make and the probes that measure them.
public struct EvalCase: Sendable, Hashable {
    /// A stable identifier, used for the per-case result file (`case_id`, or the record index).
    public var id: String
    public var kind: BenchmarkKind
    /// Edits applied together (one for zsRE and CounterFact, several for MQuAKE).
    public var requests: [EditRequest]
    public var probes: [Probe]
    /// Prompts to sample free text from for fluency (n-gram entropy); CounterFact's ROME format
    /// has them, the other formats none.
    public var generationPrompts: [String]

    public init(
        id: String, kind: BenchmarkKind, requests: [EditRequest], probes: [Probe],
        generationPrompts: [String] = []
    ) {
        self.id = id
        self.kind = kind
        self.requests = requests
        self.probes = probes
        self.generationPrompts = generationPrompts
    }
}

/// One prompt the edited model is asked, and what its answer is compared with.
public struct Probe: Sendable, Hashable {
    public enum Role: String, Sendable, Codable, CaseIterable {
        // Token accuracy (zsRE family), in [0, 1] with partial credit.
        /// The edit prompt → the new target.
        case reliability
        /// A paraphrase of the edit prompt → the new target.
        case generality
        /// An unrelated prompt → agreement with the pre-edit argmax at each answer position.
        case locality
        /// A question that needs the new fact (one hop further) → its new answer.
        case portability
        /// ROME/MEMIT zsRE "specificity": `loc + "?"` → the ground-truth answer tokens.
        case specificity

        // Probability comparisons (CounterFact family): target = target_new, alternative =
        // target_true.
        /// The rewrite prompt: success when NLL(new) < NLL(true) (ES, EM).
        case rewrite
        /// A paraphrase prompt (PS, PM).
        case paraphrase
        /// A neighbourhood prompt (another subject, same relation and true object): success
        /// when NLL(true) < NLL(new) (NS, NM).
        case neighborhood

        // MQuAKE.
        /// A multi-hop question (target = new answer, alternative = old answer); the case
        /// succeeds if any of its questions does.
        case multiHop = "multi_hop"
        /// The cloze of an edited fact, queried without context (edit-wise success).
        case editedFact = "edited_fact"
    }

    public var role: Role
    /// The prompt text (the subject filled in).
    public var prompt: String
    /// The expected answer (a continuation: a leading space is added when tokenised).
    public var target: String
    /// The competing answer of comparison probes (target_true / the old answer).
    public var alternative: String?
    /// Further accepted answers for generation-based matching (MQuAKE aliases).
    public var aliases: [String]

    public init(role: Role, prompt: String, target: String, alternative: String? = nil, aliases: [String] = []) {
        self.role = role
        self.prompt = prompt
        self.target = target
        self.alternative = alternative
        self.aliases = aliases
    }
}

/// A loaded benchmark file.
public struct Dataset: Sendable {
    public var kind: BenchmarkKind
    /// Which layout the file had (`zsre-mend`, `counterfact-rome`, `counterfact-easyedit`,
    /// `mquake`, `ibke-jsonl`), for reports.
    public var format: String
    public var path: String
    /// SHA-256 of the file's bytes (keys cached pre-edit results).
    public var sha256: String
    public var cases: [EvalCase]
    /// Records left out, one line each with the record and the reason (zsRE records whose
    /// target is empty, as EasyEdit skips them), so that reports can say why cases < records.
    public var skipped: [String]

    public init(
        kind: BenchmarkKind, format: String, path: String, sha256: String, cases: [EvalCase],
        skipped: [String] = []
    ) {
        self.kind = kind
        self.format = format
        self.path = path
        self.sha256 = sha256
        self.cases = cases
        self.skipped = skipped
    }
}
