"""JUnit XML reports for CI services (`edgec verify --junit FILE`): one test case per output, or per
source layer with --per-layer; a failing case carries its errors in the failure message."""
import xml.etree.ElementTree as ET


def write(path, suite, cases):
    """Write CASES [(name, passed, message, details)] as test suite SUITE into the JUnit file PATH."""
    failures = sum(1 for _, ok, _, _ in cases if not ok)
    root = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures))
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0")
    for name, ok, message, details in cases:
        case = ET.SubElement(node, "testcase", classname=suite, name=name)
        if ok:
            ET.SubElement(case, "system-out").text = details
        else:
            ET.SubElement(case, "failure", message=message).text = details
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def verify_cases(reports):
    """Test cases from runtime.compare.OutputReport objects (outputs, or layers)."""
    cases = []
    for r in reports:
        details = (f"max abs {r.max_abs:.6g}, max rel {r.max_rel:.6g}, mean abs {r.mean_abs:.6g}, median abs "
                   f"{r.median_abs:.6g}, p99 abs {r.p99_abs:.6g}, p99 rel {r.p99_rel:.6g}, cosine {r.cosine:.9f}, "
                   f"{r.mismatches}/{r.size} outside the element rule")
        if r.edgec_error is not None:
            details += f"; vs float64: edgec {r.edgec_error:.6g}, reference {r.reference_error:.6g}"
        message = f"{r.name}: max abs error {r.max_abs:.3g} (rule {r.rule}) {r.note}".strip()
        cases.append((r.name, r.passed, message, details))
    return cases
