import FPNStream
import XCTest

final class SecretExpansionTests: XCTestCase {
    let env = ["CAM_PASS": "p@ss:w/rd", "USER_1": "admin"]
    let files = ["/run/secrets/cam": "from-file\n"]

    func expand(_ s: String) throws -> String {
        try SecretExpansion.expand(s, environment: env) { path in
            guard let v = self.files[path] else { throw CocoaError(.fileNoSuchFile) }
            return v
        }
    }

    func testReplacesVariablesAndFilesAndKeepsTheRest() throws {
        XCTAssertEqual(try expand("rtsp://${USER_1}:${CAM_PASS}@cam/s"), "rtsp://admin:p@ss:w/rd@cam/s")
        XCTAssertEqual(try expand("rtsp://a:${file:/run/secrets/cam}@cam"), "rtsp://a:from-file@cam")
        XCTAssertEqual(try expand("no references"), "no references")
        XCTAssertEqual(try expand("cost $5 and $$ and $"), "cost $5 and $ and $")
    }

    func testErrorsNameTheReferenceNeverAValue() {
        XCTAssertThrowsError(try expand("rtsp://a:${NOPE}@cam")) {
            XCTAssertEqual("\($0)", "${NOPE}: environment variable not set")
        }
        XCTAssertThrowsError(try expand("rtsp://a:${file:/missing}@cam")) {
            XCTAssertEqual("\($0)", "${file:/missing}: cannot read the file")
        }
        XCTAssertThrowsError(try expand("rtsp://a:${CAM PASS}@cam")) { XCTAssertTrue("\($0)".contains("not a variable name")) }
        XCTAssertThrowsError(try expand("rtsp://a:${CAM_PASS@cam")) { XCTAssertTrue("\($0)".contains("unterminated")) }
    }
}
