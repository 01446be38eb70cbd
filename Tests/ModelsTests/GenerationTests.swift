import Foundation
import TensorCore
import Testing

@testable import Models

@Suite struct SamplerTests {
    let logits: [Float] = [0.5, 3.0, 2.9, -1.0, 1.0, 2.0]

    func draws(_ options: GenerationOptions, count: Int = 400) -> [Int] {
        var sampler = Sampler(options)
        return (0..<count).map { _ in logits.withUnsafeBufferPointer { sampler.next($0.baseAddress!, count: $0.count) } }
    }

    @Test func zeroTemperatureIsGreedy() {
        #expect(Set(draws(GenerationOptions(temperature: 0))) == [1])
    }

    @Test func topKOneIsGreedy() {
        #expect(Set(draws(GenerationOptions(temperature: 1, topK: 1))) == [1])
    }

    @Test func topKLimitsTheCandidates() {
        #expect(Set(draws(GenerationOptions(temperature: 5, topK: 3))) == [1, 2, 5])
    }

    @Test func topPKeepsTheSmallestNucleus() {
        // p(1) ≈ 0.40, p(2) ≈ 0.36: a 0.5 nucleus needs exactly these two.
        #expect(Set(draws(GenerationOptions(temperature: 1, topP: 0.5))) == [1, 2])
    }

    @Test func samplingIsReproducibleFromTheSeed() {
        let options = GenerationOptions(temperature: 1, seed: 7)
        #expect(draws(options) == draws(options))
        #expect(draws(options) != draws(GenerationOptions(temperature: 1, seed: 8)))
    }

    @Test func samplingFollowsTheDistribution() {
        let samples = draws(GenerationOptions(temperature: 1, seed: 3), count: 20000)
        let frequency = Float(samples.filter { $0 == 1 }.count) / Float(samples.count)
        var probabilities = logits
        probabilities.withUnsafeMutableBufferPointer { _ = Kernels.softmax($0.baseAddress!, count: $0.count) }
        #expect(abs(frequency - probabilities[1]) < 0.02)
    }
}

@Suite struct ChatTemplateTests {
    static let smolLM2 = """
        {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
        You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
        ' }}{% endif %}{{'<|im_start|>' + message['role'] + '
        ' + message['content'] + '<|im_end|>' + '
        '}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
        ' }}{% endif %}
        """

    @Test func chatMLKeepsTheTemplatesDefaultSystemPrompt() throws {
        let template = try #require(ChatTemplate(template: Self.smolLM2))
        #expect(
            template.render([.init(role: "user", content: "Hi")]) == """
                <|im_start|>system
                You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
                <|im_start|>user
                Hi<|im_end|>
                <|im_start|>assistant

                """)
    }

    @Test func anExplicitSystemMessageReplacesTheDefault() throws {
        let template = try #require(ChatTemplate(template: Self.smolLM2))
        let text = template.render([.init(role: "system", content: "Be brief."), .init(role: "user", content: "Hi")])
        #expect(text.hasPrefix("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"))
        #expect(!text.contains("SmolLM"))
    }

    @Test func unknownTemplatesAreNotGuessed() {
        #expect(ChatTemplate(template: "{{ messages }}") == nil)
    }

    @Test func llama3Format() throws {
        let template = try #require(ChatTemplate(template: "{{ '<|start_header_id|>' }}"))
        #expect(
            template.render([.init(role: "user", content: "Hi")])
                == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        )
    }
}
