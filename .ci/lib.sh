# Helpers of .ci/run (sourced; tests/test_ci.py drives them with a stand-in pytest).

# Names of the steps that failed, in order.
failed=()

# Runs "$@" as a named step; a failure is recorded and the later steps still run.
step() {
    local name=$1
    shift
    echo "== $name"
    local status=0
    "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "$name: failed (exit $status)"
        failed+=("$name")
    fi
}

# pytest, where exit 5 (no tests collected) is a failure like any other.
tests() {
    local status=0
    pytest "$@" || status=$?
    if [ "$status" -eq 5 ]; then
        echo "pytest collected no tests: failing"
    fi
    return "$status"
}

# A fresh virtualenv at $1 with the project and its test extra; the rest are pip options.
install() {
    local venv=$1
    shift
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/pip" install "$@" -e ".[test]"
    "$venv/bin/python" --version
    "$venv/bin/pip" list 2>/dev/null |
        grep -iE '^(sqlalchemy-dal|cachetools|sqlalchemy|psycopg2-binary|pymysql|pytest|freezegun|dogpile\.cache|matplotlib|mypy|ruff|prometheus.client|opentelemetry-(api|sdk)) ' ||
        true
}

# The run's verdict: lists the failed steps and returns 1 if there are any.
verdict() {
    if [ "${#failed[@]}" -ne 0 ]; then
        printf 'failed: %s\n' "${failed[@]}"
        return 1
    fi
}
