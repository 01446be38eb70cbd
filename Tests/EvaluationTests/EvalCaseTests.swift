import Testing

@testable import Evaluation

@Suite struct EvalCaseTests {
    @Test func probeRolesHaveStableNames() {
        #expect(Probe.Role.multiHop.rawValue == "multi_hop")
        #expect(Probe.Role.editedFact.rawValue == "edited_fact")
    }
}
