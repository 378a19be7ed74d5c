import ArgumentParser
import Foundation
import MoE

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tokenize", abstract: "Print the token ids of TEXT as a JSON array.")

    @OptionGroup var source: ModelOptions
    @Argument(help: "The text to tokenize.") var text: String

    func run() throws {
        let ids = try source.loadTokenizer().encode(text)
        print("[" + ids.map(String.init).joined(separator: ",") + "]")
    }
}
