/// `text` as a JSON string literal (safetensors headers, `kiln bench` records).
public func jsonStringLiteral(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// At most `limit` characters of `text`, marked when cut: error messages quote a bad field, name
/// or flag value, never a megabyte of it.
public func excerpt(_ text: String, limit: Int = 40) -> String {
    let scalars = text.unicodeScalars
    var cut = String.UnicodeScalarView()
    // Control characters and line or paragraph separators are escaped: the message stays one line.
    for scalar in scalars.prefix(limit) {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: cut.append(contentsOf: scalar.escaped(asASCII: true).unicodeScalars)
        default: cut.append(scalar)
        }
    }
    guard scalars.count > limit else { return String(cut) }
    return String(cut) + "… (\(text.utf8.count) bytes)"
}
