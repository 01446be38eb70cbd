import Foundation
import Models
import Testing
@testable import Editing

/// Method names and EasyEdit's aliases resolve to one method, in any case.
@Suite struct EditingMethodTests {
    @Test func namesAndAliasesResolve() throws {
        #expect(EditingMethod(name: "R-ROME") == .rome && EditingMethod(name: "ft") == .ftL && EditingMethod(name: "AlphaEdit") == .alphaEdit)
        #expect(EditingMethod(name: "rome2") == nil)
        #expect(EditorRegistry.namesWithAliases.joined(separator: ", ") == "ft-l (ft), ft-m, rome (r-rome), memit, alphaedit, ibke, mend")
        #expect(EditorRegistry.trainedMethods == ["ibke", "mend"])
        let model = try TestModels.tinyLlama()
        #expect(try EditorRegistry.make("ft", config: model.config).name == "ft-l")
    }
}
