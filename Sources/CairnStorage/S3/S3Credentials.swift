import CairnCore
import CairnSystem
import Foundation

/// An access key pair, with a session token for temporary credentials.
/// Its descriptions never show the secret or the token, so it can sit in
/// values that get logged.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String { "S3Credentials(redacted)" }
    public var debugDescription: String { description }

    /// Removes the secret, the token and the key ID from a text that came
    /// from elsewhere (a server's error message) before it is shown.
    func redact(_ text: String) -> String {
        var out = text
        for secret in [secretAccessKey, sessionToken ?? "", accessKeyID] where secret.count >= 4 {
            out = out.replacingOccurrences(of: secret, with: "[redacted]")
        }
        return out
    }
}

/// Where credentials come from, in the AWS SDKs' order: the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then
/// a profile of the shared credentials file.
public struct S3CredentialSource: Sendable {
    /// Fixed credentials (tests, embedding programs); nil reads the sources below.
    public var fixed: S3Credentials?
    public var environment: [String: String]
    /// `aws_shared_credentials_file`, else `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
    public var credentialsFile: String?
    /// `aws_profile`, else `AWS_PROFILE`, else `default`.
    public var profile: String?

    public init(fixed: S3Credentials? = nil, environment: [String: String] = [:], credentialsFile: String? = nil, profile: String? = nil) {
        self.fixed = fixed
        self.environment = environment
        self.credentialsFile = credentialsFile
        self.profile = profile
    }

    var resolvedFile: String {
        if let f = credentialsFile, !f.isEmpty { return f }
        if let f = environment["AWS_SHARED_CREDENTIALS_FILE"], !f.isEmpty { return f }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return "\(home)/.aws/credentials"
    }

    var resolvedProfile: String {
        if let p = profile, !p.isEmpty { return p }
        if let p = environment["AWS_PROFILE"], !p.isEmpty { return p }
        return "default"
    }

    /// Finds the credentials; reads the file on the blocking pool.
    func load() async throws -> S3Credentials {
        if let fixed { return fixed }
        let id = environment["AWS_ACCESS_KEY_ID"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = environment["AWS_SECRET_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        switch (id, secret) {
        case let (id?, secret?):
            return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
        case (.some, nil):
            throw CairnError(.configuration, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both, or unset both to use the credentials file")
        case (nil, .some):
            throw CairnError(.configuration, "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both, or unset both to use the credentials file")
        case (nil, nil):
            break
        }
        let file = resolvedFile
        let profile = resolvedProfile
        let text: String? = try await Blocking.run {
            guard FileManager.default.fileExists(atPath: file) else { return nil }
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CairnError(.configuration, "the AWS credentials file \(file) cannot be read; check its permissions")
            }
            return String(decoding: data, as: UTF8.self)
        }
        guard let text else {
            throw CairnError(.configuration, "no S3 credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or create \(file) with a [\(profile)] profile (the file is set by aws_shared_credentials_file or AWS_SHARED_CREDENTIALS_FILE)")
        }
        guard let credentials = S3CredentialSource.parseCredentialsFile(text, profile: profile) else {
            throw CairnError(.configuration, "the AWS credentials file \(file) has no [\(profile)] profile with aws_access_key_id and aws_secret_access_key; add one, or choose another profile with aws_profile or AWS_PROFILE")
        }
        return credentials
    }

    /// Reads one profile of an INI-style credentials file.
    static func parseCredentialsFile(_ text: String, profile: String) -> S3Credentials? {
        var section: String?
        var values: [String: String] = [:]
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                var name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                // The config file's spelling, `[profile name]`, is accepted too.
                if name.hasPrefix("profile ") { name = name.dropFirst("profile ".count).trimmingCharacters(in: .whitespaces) }
                section = name
                continue
            }
            guard section == profile, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            values[key] = value
        }
        guard let id = values["aws_access_key_id"], !id.isEmpty,
              let secret = values["aws_secret_access_key"], !secret.isEmpty else { return nil }
        let token = values["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
    }
}
