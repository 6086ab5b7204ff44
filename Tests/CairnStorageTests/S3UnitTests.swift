import CairnCore
@testable import CairnStorage
import CairnTestSupport
import Foundation
import Testing
import Logging

@Suite("S3 part sizes")
struct S3PartSizingTests {
    static let mib: Int64 = 1024 * 1024

    @Test("parts 1-1000 are the minimum, and the size doubles every 1000 parts")
    func doubling() {
        let min = 5 * Self.mib
        #expect(S3PartSizing.partSize(forPart: 1, minimum: min) == 5 * Self.mib)
        #expect(S3PartSizing.partSize(forPart: 1000, minimum: min) == 5 * Self.mib)
        #expect(S3PartSizing.partSize(forPart: 1001, minimum: min) == 10 * Self.mib)
        #expect(S3PartSizing.partSize(forPart: 2001, minimum: min) == 20 * Self.mib)
        #expect(S3PartSizing.partSize(forPart: 10_000, minimum: min) == 5 * Self.mib * 512)
    }

    @Test("no part is larger than 5 GiB")
    func capped() {
        #expect(S3PartSizing.partSize(forPart: 10_000, minimum: 64 * Self.mib) == S3PartSizing.maximumPartSize)
        #expect(S3PartSizing.partSize(forPart: 1, minimum: 5 * 1024 * Self.mib) == S3PartSizing.maximumPartSize)
    }

    @Test("10,000 parts from 5 MiB hold about 4.9 TiB, near S3's largest object")
    func capacity() {
        let total = S3PartSizing.maximumObjectSize(minimum: 5 * Self.mib)
        #expect(total == 5 * Self.mib * 1000 * 1023)
        #expect(total > 5_000_000_000_000)
    }
}

@Suite("S3 XML")
struct S3XMLTests {
    @Test("a ListObjectsV2 page with entities, a continuation token and timestamps")
    func listPage() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>ks/</Prefix>
              <KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
              <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
              <Contents><Key>ks/a&amp;b &lt;1&gt;</Key><LastModified>2026-11-25T20:02:22.000Z</LastModified>
                <ETag>&quot;b1946ac92492d2347c6235b4d2611184&quot;</ETag><Size>6</Size><StorageClass>STANDARD</StorageClass></Contents>
              <Contents><Key>ks/&#xFC;&#252;</Key><LastModified>2026-11-25T20:02:23Z</LastModified><Size>0</Size></Contents>
            </ListBucketResult>
            """
        let page = try S3Messages.listPage(Array(xml.utf8))
        #expect(page.isTruncated)
        #expect(page.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        #expect(page.objects.map(\.key) == ["ks/a&b <1>", "ks/üü"])
        #expect(page.objects.map(\.size) == [6, 0])
        #expect(page.objects[0].etag == "\"b1946ac92492d2347c6235b4d2611184\"")
        #expect(page.objects[0].lastModified == Date(timeIntervalSince1970: 1_795_636_942))
        #expect(page.objects[1].lastModified == Date(timeIntervalSince1970: 1_795_636_943))
    }

    @Test("an empty listing, written with self-closing and prefixed elements")
    func emptyListing() throws {
        let xml = "<s3:ListBucketResult xmlns:s3=\"x\"><s3:Prefix/><s3:IsTruncated>false</s3:IsTruncated><!-- none --></s3:ListBucketResult>"
        let page = try S3Messages.listPage(Array(xml.utf8))
        #expect(page.objects.isEmpty && !page.isTruncated && page.nextContinuationToken == nil)
    }

    @Test("error replies, upload IDs, upload lists and delete results")
    func replies() throws {
        let error = S3Messages.errorReply(Array("""
            <?xml version="1.0"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>x</BucketName></Error>
            """.utf8))
        #expect(error == .init(code: "NoSuchBucket", message: "The specified bucket does not exist", region: nil))
        #expect(S3Messages.errorReply(Array("not xml".utf8)) == nil)
        #expect(S3Messages.errorReply([]) == nil)

        let id = try S3Messages.uploadID(Array("<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>abc_123</UploadId></InitiateMultipartUploadResult>".utf8))
        #expect(id == "abc_123")

        let uploads = try S3Messages.uploadsPage(Array("""
            <ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>true</IsTruncated><NextKeyMarker>k2</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
            <Upload><Key>k1</Key><UploadId>u1</UploadId></Upload><Upload><Key>k2</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>
            """.utf8))
        #expect(uploads.uploads == [.init(key: "k1", uploadID: "u1"), .init(key: "k2", uploadID: "u2")])
        #expect(uploads.isTruncated && uploads.nextKeyMarker == "k2" && uploads.nextUploadIDMarker == "u2")

        let failures = try S3Messages.deleteFailures(Array("<DeleteResult><Error><Key>a</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>".utf8))
        #expect(failures == [.init(key: "a", code: "AccessDenied", message: "no")])
        #expect(try S3Messages.deleteFailures(Array("<DeleteResult/>".utf8)).isEmpty)
    }

    @Test("malformed documents are errors, not crashes")
    func malformed() {
        for text in ["", "<a>", "<a></b>", "<a>&bogus;</a>", "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>", "<Other/>"] {
            #expect(throws: (any Error).self) { try S3Messages.listPage(Array(text.utf8)) }
        }
    }

    @Test("request bodies escape keys and list parts in order")
    func bodies() throws {
        let delete = S3Messages.deleteObjects(keys: ["a&b", "c<d"])
        #expect(delete.contains("<Key>a&amp;b</Key>") && delete.contains("<Key>c&lt;d</Key>") && delete.contains("<Quiet>true</Quiet>"))
        let complete = S3Messages.completeMultipartUpload(parts: [(2, "\"e2\""), (1, "\"e1\"")])
        let root = try XMLDocument.parse(Array(complete.utf8))
        #expect(root.children(named: "Part").map { $0.string("PartNumber") } == ["1", "2"])
        #expect(root.children(named: "Part").map { $0.string("ETag") } == ["\"e1\"", "\"e2\""])
    }
}

@Suite("S3 settings and credentials")
struct S3SettingsTests {
    @Test("AWS: the region and endpoint come from the configuration, then the environment")
    func awsDefaults() throws {
        var config = CairnConfiguration()
        var s = try S3Settings.resolve(location: .s3(bucket: "bkt", prefix: "p"), configuration: config, environment: [:])
        #expect(s.region == "us-east-1" && s.endpoint.description == "https://s3.us-east-1.amazonaws.com" && !s.pathStyle)
        #expect(s.address(objectKey: "p/k 1") == ("bkt.s3.us-east-1.amazonaws.com", "/p/k%201"))
        s = try S3Settings.resolve(location: .s3(bucket: "bkt", prefix: ""), configuration: config,
                                   environment: ["AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-central-1"])
        #expect(s.region == "eu-central-1")
        config.awsRegion = "ap-south-1"
        s = try S3Settings.resolve(location: .s3(bucket: "my.dotted.bucket", prefix: ""), configuration: config, environment: ["AWS_REGION": "eu-central-1"])
        #expect(s.region == "ap-south-1" && s.pathStyle)
        #expect(s.address(objectKey: nil) == ("s3.ap-south-1.amazonaws.com", "/my.dotted.bucket"))
    }

    @Test("a custom endpoint is path-style unless s3_force_path_style is false")
    func customEndpoint() throws {
        var config = CairnConfiguration()
        var s = try S3Settings.resolve(location: .s3(bucket: "bkt", prefix: ""), configuration: config,
                                       environment: ["AWS_ENDPOINT_URL": "http://other:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8333"])
        #expect(s.endpoint == .init(scheme: "http", host: "127.0.0.1", port: 8333) && s.pathStyle)
        #expect(s.endpoint.hostHeader(s.endpoint.host) == "127.0.0.1:8333")
        config.s3Endpoint = "https://minio.example.com"
        config.s3ForcePathStyle = false
        s = try S3Settings.resolve(location: .s3(bucket: "bkt", prefix: ""), configuration: config, environment: ["AWS_ENDPOINT_URL_S3": "http://x:1"])
        #expect(s.endpoint.description == "https://minio.example.com" && !s.pathStyle)
        config.s3Endpoint = "ftp://nope"
        #expect(throws: CairnError.self) { try S3Settings.resolve(location: .s3(bucket: "bkt", prefix: ""), configuration: config, environment: [:]) }
    }

    @Test("gs:// uses Cloud Storage's endpoint, path style and the region auto")
    func gcs() throws {
        var config = CairnConfiguration()
        config.awsRegion = "us-east-1"
        let s = try S3Settings.resolve(location: .gcs(bucket: "bkt", prefix: "backups"), configuration: config,
                                       environment: ["AWS_ENDPOINT_URL_S3": "http://ignored:1"])
        #expect(s.flavor == .gcs && s.region == "auto" && s.pathStyle)
        #expect(s.endpoint.description == "https://storage.googleapis.com")
        #expect(s.displayURL == "gs://bkt/backups")
        #expect(s.objectKey("ks/0/MANIFEST") == "backups/ks/0/MANIFEST")
        #expect(s.storageKey("backups/ks/0/MANIFEST") == "ks/0/MANIFEST" && s.storageKey("other/x") == nil)
    }

    @Test("the factory opens s3:// and gs:// storages")
    func factory() throws {
        let storage = try StorageFactory.make(url: "s3://bucket-one/prefix", configuration: CairnConfiguration(), environment: [:], logger: .init(label: "test"))
        #expect(storage.displayURL == "s3://bucket-one/prefix")
        let gcs = try StorageFactory.make(url: "gs://bucket-two", configuration: CairnConfiguration(), environment: [:], logger: .init(label: "test"))
        #expect(gcs.displayURL == "gs://bucket-two")
    }

    @Test("the credentials file: profiles, comments, session tokens")
    func credentialsFile() {
        let text = """
            # comment
            [default]
            aws_access_key_id = AKIADEFAULT
            aws_secret_access_key = secret/default+key

            [profile backup]
            ; another comment
            aws_access_key_id=AKIABACKUP
            aws_secret_access_key=secretbackup
            aws_session_token = tok
            [empty]
            aws_access_key_id = x
            """
        #expect(S3CredentialSource.parseCredentialsFile(text, profile: "default") == .init(accessKeyID: "AKIADEFAULT", secretAccessKey: "secret/default+key"))
        #expect(S3CredentialSource.parseCredentialsFile(text, profile: "backup") == .init(accessKeyID: "AKIABACKUP", secretAccessKey: "secretbackup", sessionToken: "tok"))
        #expect(S3CredentialSource.parseCredentialsFile(text, profile: "empty") == nil)
        #expect(S3CredentialSource.parseCredentialsFile(text, profile: "missing") == nil)
    }

    @Test("credentials: the environment first, then the file's profile, and clear errors")
    func credentialSources() async throws {
        let dir = try TemporaryDirectory(prefix: "cairn-s3-credentials")
        defer { dir.remove() }
        let file = dir.path + "/credentials"
        try "[ops]\naws_access_key_id = FILEKEY\naws_secret_access_key = FILESECRET\n".write(toFile: file, atomically: true, encoding: .utf8)

        let env = S3CredentialSource(environment: ["AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "ENVSECRET", "AWS_SESSION_TOKEN": "T"])
        #expect(try await env.load() == .init(accessKeyID: "ENVKEY", secretAccessKey: "ENVSECRET", sessionToken: "T"))

        let fromFile = S3CredentialSource(environment: ["AWS_PROFILE": "ops"], credentialsFile: file)
        #expect(try await fromFile.load() == .init(accessKeyID: "FILEKEY", secretAccessKey: "FILESECRET"))
        let viaEnvironment = S3CredentialSource(environment: ["AWS_SHARED_CREDENTIALS_FILE": file], profile: "ops")
        #expect(try await viaEnvironment.load().accessKeyID == "FILEKEY")

        let half = S3CredentialSource(environment: ["AWS_ACCESS_KEY_ID": "ENVKEY"])
        let halfError = await #expect(throws: CairnError.self) { try await half.load() }
        #expect(halfError?.code == .configuration && halfError?.message.contains("AWS_SECRET_ACCESS_KEY") == true)

        let wrongProfile = S3CredentialSource(environment: [:], credentialsFile: file, profile: "nope")
        let profileError = await #expect(throws: CairnError.self) { try await wrongProfile.load() }
        #expect(profileError?.message.contains("[nope]") == true && profileError?.message.contains(file) == true)

        let none = S3CredentialSource(environment: ["HOME": dir.path])
        let noneError = await #expect(throws: CairnError.self) { try await none.load() }
        #expect(noneError?.message.contains("AWS_ACCESS_KEY_ID") == true)
    }
}

@Suite("S3 retry policy")
struct S3RetryPolicyTests {
    @Test("the ceiling doubles from the base up to the cap, and each wait lies under it")
    func backoff() {
        let policy = S3RetryPolicy(maxRetries: 10, baseDelay: .milliseconds(100), maxDelay: .seconds(1))
        #expect(policy.delayCeiling(forRetry: 1) == .milliseconds(100))
        #expect(policy.delayCeiling(forRetry: 2) == .milliseconds(200))
        #expect(policy.delayCeiling(forRetry: 4) == .milliseconds(800))
        #expect(policy.delayCeiling(forRetry: 5) == .seconds(1))
        #expect(policy.delayCeiling(forRetry: 60) == .seconds(1))
        var generator = SystemRandomNumberGenerator()
        for retry in 1...8 {
            let delay = policy.delay(forRetry: retry, using: &generator)
            #expect(delay >= .zero && delay <= policy.delayCeiling(forRetry: retry))
        }
    }

    @Test("server errors and throttling are retried; refusals are not")
    func classification() {
        #expect(S3RetryPolicy.isRetryable(status: 500, code: "InternalError"))
        #expect(S3RetryPolicy.isRetryable(status: 503, code: "SlowDown"))
        #expect(S3RetryPolicy.isRetryable(status: 429, code: nil))
        #expect(S3RetryPolicy.isRetryable(status: 400, code: "RequestTimeout"))
        #expect(!S3RetryPolicy.isRetryable(status: 403, code: "SignatureDoesNotMatch"))
        #expect(!S3RetryPolicy.isRetryable(status: 403, code: "AccessDenied"))
        #expect(!S3RetryPolicy.isRetryable(status: 404, code: "NoSuchBucket"))
        #expect(!S3RetryPolicy.isRetryable(status: 404, code: "NoSuchKey"))
    }
}
