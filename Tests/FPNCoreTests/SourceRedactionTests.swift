import FPNCore
import XCTest

final class SourceRedactionTests: XCTestCase {
    func testUserAndPasswordAreRedacted() {
        XCTAssertEqual(redactCredentials("rtsp://user:pass@host"), "rtsp://***@host")
        XCTAssertEqual(redactCredentials("rtsp://admin:s3cr%40t@10.0.0.5:554/stream1?tcp"),
                       "rtsp://***@10.0.0.5:554/stream1?tcp")
        XCTAssertEqual(redactCredentials("rtmp://token@live.example.com/app"), "rtmp://***@live.example.com/app")
    }

    func testPasswordContainingAtSignIsFullyRemoved() {
        XCTAssertEqual(redactCredentials("rtsp://u:p@ss@cam/x"), "rtsp://***@cam/x")
    }

    func testAtSignInPathIsNotUserinfo() {
        XCTAssertEqual(redactCredentials("http://host/path@v2/a.mp4"), "http://host/path@v2/a.mp4")
    }

    func testSecretQueryValues() {
        XCTAssertEqual(redactCredentials("https://cdn.example/v.m3u8?token=abc&quality=hd#t"),
                       "https://cdn.example/v.m3u8?token=***&quality=hd#t")
        XCTAssertEqual(redactCredentials("srt://host:9000?mode=caller&passphrase=x&Password=y"),
                       "srt://host:9000?mode=caller&passphrase=***&Password=***")
    }

    func testPathsAreUnchanged() {
        for s in ["samples/demo.mp4", "/tmp/a:b@c.mp4", "-", "pipe:1", "file:/x/y.mp4", "weird dir/a://b@c"] {
            XCTAssertEqual(redactCredentials(s), s)
        }
    }
}
