@testable import CairnStorage
import Foundation
import Testing

/// The signer against AWS's published Signature Version 4 test suite
/// (aws-sig-v4-test-suite): its example credentials, region, service and
/// time, and for each case the expected canonical request, string to sign
/// and Authorization header.
@Suite("SigV4 signer")
struct SigV4SignerTests {
    static let suiteCredentials = S3Credentials(accessKeyID: "AKIDEXAMPLE",
                                                secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let signer = SigV4Signer(credentials: suiteCredentials, region: "us-east-1", service: "service")
    /// 20150830T123600Z.
    static let date = Date(timeIntervalSince1970: 1_440_938_160)
    static let scope = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
    static let credential = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"

    @Test("the suite's time formats as 20150830T123600Z")
    func timestamp() {
        #expect(SigV4Signer.timestamps(Self.date) == ("20150830T123600Z", "20150830"))
    }

    @Test("get-vanilla")
    func getVanilla() {
        let signed = Self.signer.sign(.init(method: "GET", path: "/", query: [],
                                            headers: [("Host", "example.amazonaws.com")],
                                            payloadHash: SigV4Signer.emptyPayloadHash), at: Self.date)
        #expect(signed.canonicalRequest == """
            GET
            /

            host:example.amazonaws.com
            x-amz-date:20150830T123600Z

            host;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signed.stringToSign == Self.scope + "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        #expect(signed.authorization == Self.credential + ", SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    @Test("get-vanilla-query-order-key-case")
    func getVanillaQueryOrderKeyCase() {
        let signed = Self.signer.sign(.init(method: "GET", path: "/", query: [("Param2", "value2"), ("Param1", "value1")],
                                            headers: [("Host", "example.amazonaws.com")],
                                            payloadHash: SigV4Signer.emptyPayloadHash), at: Self.date)
        #expect(signed.canonicalRequest == """
            GET
            /
            Param1=value1&Param2=value2
            host:example.amazonaws.com
            x-amz-date:20150830T123600Z

            host;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signed.stringToSign == Self.scope + "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0")
        #expect(signed.authorization == Self.credential + ", SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
    }

    @Test("post-x-www-form-urlencoded")
    func postFormURLEncoded() {
        let body = Array("Param1=value1".utf8)
        let signed = Self.signer.sign(.init(method: "POST", path: "/", query: [],
                                            headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Host", "example.amazonaws.com")],
                                            payloadHash: SigV4Signer.hexSHA256(body)), at: Self.date)
        #expect(signed.canonicalRequest == """
            POST
            /

            content-type:application/x-www-form-urlencoded
            host:example.amazonaws.com
            x-amz-date:20150830T123600Z

            content-type;host;x-amz-date
            9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e
            """)
        #expect(signed.stringToSign == Self.scope + "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281")
        #expect(signed.authorization == Self.credential + ", SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    @Test("post-sts-header-before: a session token is sent and signed as x-amz-security-token")
    func sessionToken() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
        var credentials = Self.suiteCredentials
        credentials.sessionToken = token
        let signer = SigV4Signer(credentials: credentials, region: "us-east-1", service: "service")
        let signed = signer.sign(.init(method: "POST", path: "/", query: [], headers: [("Host", "example.amazonaws.com")],
                                       payloadHash: SigV4Signer.emptyPayloadHash), at: Self.date)
        #expect(signed.headers.contains { $0.name == "x-amz-security-token" && $0.value == token })
        #expect(signed.stringToSign == Self.scope + "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6")
        #expect(signed.authorization == Self.credential + ", SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead")
    }

    @Test("S3 keys are encoded once, slashes kept, and the canonical path is the sent path")
    func s3KeyEncoding() {
        #expect(AWSURIEncoding.path("commerce/-80/2026-01-02.030405.zone1-100/MANIFEST") == "commerce/-80/2026-01-02.030405.zone1-100/MANIFEST")
        #expect(AWSURIEncoding.path("a b/c+d=e&f~_.g/ü") == "a%20b/c%2Bd%3De%26f~_.g/%C3%BC")
        #expect(AWSURIEncoding.encode("a/b") == "a%2Fb")
        // The same request signed by botocore's S3SigV4Auth, which does not
        // encode the path a second time, gives this signature.
        let s3 = SigV4Signer(credentials: Self.suiteCredentials, region: "us-east-1", service: "s3")
        let signed = s3.sign(.init(method: "GET", path: "/bucket/a%20b/%C3%BC", query: [("uploads", ""), ("prefix", "x/y z")],
                                   headers: [("Host", "s3.example.com"), ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash)],
                                   payloadHash: SigV4Signer.emptyPayloadHash), at: Self.date)
        let lines = signed.canonicalRequest.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[1] == "/bucket/a%20b/%C3%BC")
        #expect(lines[2] == "prefix=x%2Fy%20z&uploads=")
        #expect(lines.last == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(signed.signature == "b7b035df94e005cf0a9b759dc2422a0e56997d841eede8c30c7bf16438049152")
    }

    @Test("header values are trimmed and inner spaces collapsed")
    func headerNormalization() {
        let signed = Self.signer.sign(.init(method: "GET", path: "/", query: [],
                                            headers: [("Host", "example.amazonaws.com"), ("My-Header1", "  value1   value2  ")],
                                            payloadHash: SigV4Signer.emptyPayloadHash), at: Self.date)
        #expect(signed.canonicalRequest.contains("\nmy-header1:value1 value2\n"))
    }

    @Test("credentials never show in descriptions")
    func credentialsRedacted() {
        let credentials = S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: "TOKEN123")
        for text in ["\(credentials)", String(reflecting: credentials)] {
            #expect(!text.contains("wJalr") && !text.contains("TOKEN123") && !text.contains("AKIDEXAMPLE"))
        }
        #expect(credentials.redact("bad key AKIDEXAMPLE with wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY") == "bad key [redacted] with [redacted]")
    }
}
