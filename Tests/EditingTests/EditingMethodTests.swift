import Foundation
import Models
import Testing

@testable import Editing

/// Method names and EasyEdit's aliases resolve to one method, in any case.
@Suite struct EditingMethodTests {
    @Test func namesAndAliasesResolve() throws {
        #expect(
            EditingMethod(name: "R-ROME") == .rome && EditingMethod(name: "ft") == .ftL && EditingMethod(name: "AlphaEdit") == .alphaEdit)
        #expect(EditingMethod(name: "rome2") == nil)
        #expect(EditingMethod.namesWithAliases.joined(separator: ", ") == "ft-l (ft), ft-m, rome (r-rome), memit, alphaedit, ibke, mend")
        #expect(EditingMethod.trained == [.ibke, .mend])
        #expect("\(EditingMethod.alphaEdit)" == "alphaedit")
        #expect(try EditingMethod(parsing: "FT") == .ftL)
        #expect(throws: EditorError.unknownMethod("rome2", known: EditingMethod.namesWithAliases)) { try EditingMethod(parsing: "rome2") }
        let model = try TestModels.tinyLlama()
        #expect(try EditorRegistry.make(try EditingMethod(parsing: "ft"), config: model.config).name == "ft-l")
    }
}
