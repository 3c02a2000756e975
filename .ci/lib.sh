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

# Whether the MySQL/MariaDB client headers mysqlclient builds against are here (its
# build asks pkg-config for "mysqlclient" or "mariadb").
client_headers() {
    pkg-config --exists mysqlclient 2>/dev/null || pkg-config --exists mariadb 2>/dev/null
}

# Prints the extras to install: test, and mysqlclient once its headers are here. Missing
# headers are installed with apt-get (Debian's libmariadb-dev) when running as root.
ci_extras() {
    if ! client_headers && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "MySQL client headers missing: apt-get install libmariadb-dev pkg-config" >&2
        apt-get install -y -q libmariadb-dev pkg-config >&2 ||
            { apt-get update -q >&2 && apt-get install -y -q libmariadb-dev pkg-config >&2; } ||
            true
    fi
    if client_headers; then
        echo "test,mysqlclient"
    else
        echo "no MySQL client headers: mysqlclient is not installed, its tests will fail" >&2
        echo "test"
    fi
}

# The extras `install` installs (.ci/run sets them from ci_extras).
extras=test

# A fresh virtualenv at $1 with the project and its extras; the rest are pip options.
install() {
    local venv=$1
    shift
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/pip" install "$@" -e ".[$extras]"
    "$venv/bin/python" --version
    "$venv/bin/pip" list 2>/dev/null |
        grep -iE '^(sqlalchemy-dal|cachetools|sqlalchemy|psycopg2-binary|pymysql|mysqlclient|greenlet|asyncpg|aiosqlite|asyncmy|pytest|pytest-asyncio|freezegun|dogpile\.cache|matplotlib|mypy|ruff|prometheus.client|opentelemetry-(api|sdk)) ' ||
        true
}

# Steps started by `alongside`: their names, process ids and log files.
side_names=()
side_pids=()
side_logs=()

# Runs "$@" as a named step in a background subshell, its output kept in a file; the
# tests are mostly waiting on servers, so two suites side by side take little longer
# than one. `join` waits for them and prints their output.
alongside() {
    local name=$1
    shift
    local log
    log=$(mktemp)
    ("$@") >"$log" 2>&1 &
    side_names+=("$name")
    side_pids+=("$!")
    side_logs+=("$log")
}

join() {
    local i status
    for i in "${!side_pids[@]}"; do
        status=0
        wait "${side_pids[$i]}" || status=$?
        echo "== ${side_names[$i]} (ran alongside)"
        cat "${side_logs[$i]}"
        rm -f "${side_logs[$i]}"
        if [ "$status" -ne 0 ]; then
            echo "${side_names[$i]}: failed (exit $status)"
            failed+=("${side_names[$i]}")
        fi
    done
    side_names=()
    side_pids=()
    side_logs=()
}

# The run's verdict: lists the failed steps and returns 1 if there are any.
verdict() {
    if [ "${#failed[@]}" -ne 0 ]; then
        printf 'failed: %s\n' "${failed[@]}"
        return 1
    fi
}
