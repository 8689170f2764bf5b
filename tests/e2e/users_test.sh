#!/bin/bash
# A real non-root user works through a root-run mount: what they create belongs to them (and
# their primary group) in the backing directory, and the backing permissions keep them out of
# what is not theirs.

E2E_TIMEOUT=${E2E_TIMEOUT:-45}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

for tool in useradd userdel runuser getent; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done

src=$E2E_TMP/backing
mnt=$E2E_TMP/mnt
mkdir "$src" "$mnt"
chmod 0755 "$src"
e2e_groupadd
team=$E2E_GROUP
team_gid=$(getent group "$team" | cut -d: -f3)
e2e_useradd
user=$E2E_USER
usermod -a -G "$team" "$user"
uid=$(id -u "$user")
gid=$(id -g "$user")
group=$(id -gn "$user")
note "created user $user (uid $uid, primary group $group/$gid, also in $team/$team_gid)"

# A sticky world-writable directory, like /tmp; a root-only file; a root-owned public file.
mkdir -m 1777 "$src/drop"
chmod 1777 "$src/drop"
echo "root's secret" >"$src/secret"
chmod 0600 "$src/secret"
echo "root's public notes" >"$src/drop/public"
chmod 0644 "$src/drop/public"
printf 'payload of %s\n' "$user" >"$E2E_TMP/payload"
chmod 0644 "$E2E_TMP/payload"

# Reachable only through a supplementary group: a 0640 file and a setgid 2770 directory.
echo "for the team" >"$src/team-file"
chgrp "$team" "$src/team-file"
chmod 0640 "$src/team-file"
mkdir "$src/team-dir"
chgrp "$team" "$src/team-dir"
chmod 2770 "$src/team-dir"

diofs_mount "$src" "$mnt" dbopt

as_user() { runuser -u "$user" -- "$@"; }

# --- what the user creates is theirs ---------------------------------------------------------
as_user cp "$E2E_TMP/payload" "$mnt/drop/copied"
as_user mkdir "$mnt/drop/dir"
as_user ln -s copied "$mnt/drop/link"
as_user sh -c "echo inside >'$mnt/drop/dir/inner'"
as_user mkdir -p "$mnt/drop/dir/a/b/c"
as_user mv "$mnt/drop/dir/inner" "$mnt/drop/dir/a/moved"

for entry in drop/copied drop/dir drop/link drop/dir/a/moved drop/dir/a/b/c; do
    assert_eq "$uid $gid" "$(stat -c '%u %g' "$src/$entry")" \
        "owner and group of $entry in the backing directory (made by $user through the mount)"
    assert_eq "$user $group" "$(stat -c '%U %G' "$mnt/$entry")" \
        "owner and group of $entry seen through the mount"
done
assert_eq "symbolic link" "$(stat -c %F "$src/drop/link")" "type of drop/link in the backing directory"
assert_eq copied "$(readlink "$src/drop/link")" "target of drop/link in the backing directory"
assert_same_files "$E2E_TMP/payload" "$src/drop/copied" "the file $user copied in, in the backing directory"
assert_eq "$(cat "$E2E_TMP/payload")" "$(as_user cat "$mnt/drop/link")" "reading through $user's symlink"
assert_eq inside "$(cat "$src/drop/dir/a/moved")" "a file $user wrote and renamed"
ok "cp, mkdir, ln -s, mv by $user: theirs (uid $uid, gid $gid) in the backing directory"

# The user's umask applies once, not twice and not the daemon's.
as_user sh -c "umask 027; echo x >'$mnt/drop/umask-file'; mkdir '$mnt/drop/umask-dir'"
assert_eq 640 "$(stat -c %a "$src/drop/umask-file")" "mode of a file created with umask 027"
assert_eq 750 "$(stat -c %a "$src/drop/umask-dir")" "mode of a directory created with umask 027"
ok "the caller's umask decides the modes"

# --- supplementary groups --------------------------------------------------------------------
assert_eq "for the team" "$(as_user cat "$mnt/team-file")" "$user reading a 0640 file of group $team"
as_user sh -c "echo team work >'$mnt/team-dir/by-member'; mkdir '$mnt/team-dir/sub'"
assert_eq "$uid $team_gid" "$(stat -c '%u %g' "$src/team-dir/by-member")" \
    "owner and group of a file $user made in a setgid directory of group $team"
assert_eq "$uid $team_gid" "$(stat -c '%u %g' "$src/team-dir/sub")" \
    "owner and group of a directory $user made in a setgid directory of group $team"
[[ -g "$src/team-dir/sub" ]] || fail "a directory made in a setgid directory did not inherit setgid"
ok "$user reaches what belongs to their supplementary group; setgid directories pass the group on"

# --- what is not theirs stays out of reach ---------------------------------------------------
status=0
err=$(as_user cat "$mnt/secret" 2>&1) || status=$?
[[ $status != 0 ]] || fail "$user read the root-only 0600 file through the mount: $err"
assert_contains "$err" "Permission denied" "error of $user's cat of a root-only 0600 file"
assert_eq "root's secret" "$(cat "$mnt/secret")" "root reading the 0600 file through the mount"
ok "a root-only 0600 file: denied to $user, readable by root"

assert_eq "root's public notes" "$(as_user cat "$mnt/drop/public")" "$user reading a 0644 file of root's"
status=0
err=$(as_user sh -c "echo vandal >>'$mnt/drop/public'" 2>&1) || status=$?
[[ $status != 0 ]] || fail "$user appended to root's 0644 file through the mount"
assert_contains "$err" "Permission denied" "error of $user writing root's 0644 file"
status=0
err=$(as_user rm -f "$mnt/drop/public" 2>&1) || status=$?
[[ $status != 0 ]] || fail "$user removed root's file from a sticky directory through the mount"
assert_contains "$err" "not permitted" "error of $user removing root's file from a sticky directory"
status=0
err=$(as_user chown root "$mnt/drop/copied" 2>&1) || status=$?
[[ $status != 0 ]] || fail "$user gave a file to root through the mount"
assert_contains "$err" "not permitted" "error of $user's chown root"
status=0
err=$(as_user touch "$mnt/not-in-drop" 2>&1) || status=$?
[[ $status != 0 ]] || fail "$user created a file in root's 0755 directory through the mount"
assert_contains "$err" "Permission denied" "error of $user creating a file in root's 0755 directory"
[[ ! -e "$src/not-in-drop" ]] || fail "a refused create left $src/not-in-drop behind"
assert_eq "root's public notes" "$(cat "$src/drop/public")" "root's file after $user's attempts"
assert_eq "$uid $gid" "$(stat -c '%u %g' "$src/drop/copied")" \
    "owner of $user's file after the refused chown (unchanged)"
ok "$user cannot write, remove or give away what is not theirs"

# Root's own creations are root's (the daemon switches back after each request).
echo "root again" >"$mnt/drop/root-file"
assert_eq "0 0" "$(stat -c '%u %g' "$src/drop/root-file")" "owner of a file root created after $user's requests"
ok "root's requests after $user's are root's"

diofs_unmount "$mnt" "$DIOFS_PID"
