# fish completion for neuro. Generated from the command tree by `neuro completion fish`: do not edit.
# Install: neuro completion fish > ~/.config/fish/completions/neuro.fish

function __neuro_spec --description 'neuro: subcommands, options and arguments of a command path'
    set -g __neuro_cmds
    set -g __neuro_opts
    set -g __neuro_vopts
    set -g __neuro_args
    switch "$argv[1]"
        case ''
            set -g __neuro_cmds 'attach'\t'Attach to a running job' \
            'capacity'\t'Show how many jobs of each preset fit now' \
            'completion'\t'Print a shell completion script' \
            'config'\t'Show the client configuration' \
            'cp'\t'Copy files to or from storage' \
            'disk'\t'Manage persistent disks' \
            'exec'\t'Run a command in a running job' \
            'job'\t'Manage jobs' \
            'kill'\t'Kill jobs' \
            'login'\t'Log in to a neuro server' \
            'logout'\t'Log out and go back to the local server' \
            'logs'\t'Print the output of a job' \
            'ls'\t'List a storage directory' \
            'mkdir'\t'Make storage directories' \
            'port-forward'\t'Forward local ports to a job' \
            'ps'\t'List jobs' \
            'rm'\t'Remove files from storage' \
            'run'\t'Run a job' \
            'secret'\t'Manage secrets' \
            'server'\t'Manage the embedded local server' \
            'share'\t'Share a job with another user' \
            'status'\t'Show the status of a job' \
            'storage'\t'Manage files in your storage' \
            'top'\t'Show live CPU, memory and GPU use of jobs' \
            'wait'\t'Wait until jobs finish (or start, or succeed)'
            set -g __neuro_opts '--version'\t'Show the version and exit' \
            '-v'\t'More output; also shows tracebacks' \
            '--verbose'\t'More output; also shows tracebacks' \
            '--show-traceback'\t'Show the Python traceback on errors' \
            '--color'\t'Colour in the output' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--color'
        case 'attach'
            set -g __neuro_opts '--detach-keys'\t'Key sequence that detaches from a TTY session (\'\' disables it)' \
            '--port-forward'\t'Forward a local port to the job\'s port while attached (repeatable)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--detach-keys' '--port-forward'
            set -g __neuro_args 'jobs'
        case 'capacity'
            set -g __neuro_opts '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'completion'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '=bash,zsh,fish'
        case 'config'
            set -g __neuro_cmds 'show'\t'Show server, user and presets' \
            'show-token'\t'Print the API token'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'config show'
            set -g __neuro_opts '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'config show-token'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'cp'
            set -g __neuro_opts '-r'\t'Copy directories and their contents' \
            '--recursive'\t'Copy directories and their contents' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-' '-'
        case 'disk'
            set -g __neuro_cmds 'create'\t'Create a disk' \
            'ls'\t'List your disks' \
            'rm'\t'Remove disks'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'disk create'
            set -g __neuro_opts '--name'\t'A name to use instead of its id (3-40 letters, digits, dashes)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--name'
            set -g __neuro_args '-'
        case 'disk ls'
            set -g __neuro_opts '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'disk rm'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-*'
        case 'exec'
            set -g __neuro_opts '-i'\t'Pass standard input on to the command (a TTY always gets the keyboard)' \
            '--stdin'\t'Pass standard input on to the command (a TTY always gets the keyboard)' \
            '-t'\t'Allocate a TTY' \
            '-T'\t'Allocate a TTY' \
            '--tty'\t'Allocate a TTY' \
            '--no-tty'\t'Allocate a TTY' \
            '--detach-keys'\t'Key sequence that detaches from a TTY session (\'\' disables it)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--detach-keys'
            set -g __neuro_args 'jobs' '-*'
        case 'job'
            set -g __neuro_cmds 'attach'\t'Attach to a running job' \
            'browse'\t'Open a job\'s HTTP URL in a browser' \
            'bump-life-span'\t'Extend the life span of a job' \
            'exec'\t'Run a command in a running job' \
            'generate-run-command'\t'Print the run command of a job' \
            'kill'\t'Kill jobs' \
            'logs'\t'Print the output of a job' \
            'ls'\t'List jobs' \
            'port-forward'\t'Forward local ports to a job' \
            'run'\t'Run a job' \
            'send-signal'\t'Send a signal to a job' \
            'status'\t'Show the status of a job' \
            'tags'\t'List the tags of your jobs' \
            'top'\t'Show live CPU, memory and GPU use of jobs'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'job attach'
            set -g __neuro_opts '--detach-keys'\t'Key sequence that detaches from a TTY session (\'\' disables it)' \
            '--port-forward'\t'Forward a local port to the job\'s port while attached (repeatable)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--detach-keys' '--port-forward'
            set -g __neuro_args 'jobs'
        case 'job browse'
            set -g __neuro_opts '--no-browser'\t'Print the URLs instead of opening a browser' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs'
        case 'job bump-life-span'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs' '-'
        case 'job exec'
            set -g __neuro_opts '-i'\t'Pass standard input on to the command (a TTY always gets the keyboard)' \
            '--stdin'\t'Pass standard input on to the command (a TTY always gets the keyboard)' \
            '-t'\t'Allocate a TTY' \
            '-T'\t'Allocate a TTY' \
            '--tty'\t'Allocate a TTY' \
            '--no-tty'\t'Allocate a TTY' \
            '--detach-keys'\t'Key sequence that detaches from a TTY session (\'\' disables it)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--detach-keys'
            set -g __neuro_args 'jobs' '-*'
        case 'job generate-run-command'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs'
        case 'job kill'
            set -g __neuro_opts '-s'\t'Send this signal instead of stopping the job (e.g' \
            '--signal'\t'Send this signal instead of stopping the job (e.g' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '-s' '--signal'
            set -g __neuro_args 'jobs*'
        case 'job logs'
            set -g __neuro_opts '--since'\t'Only output printed at or after this time (ISO date, or a delta like 10m)' \
            '--timestamps'\t'Prefix each line with its time (RFC 3339, UTC)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--since'
            set -g __neuro_args 'jobs'
        case 'job ls'
            set -g __neuro_opts '-s'\t'Show jobs in this status (repeatable)' \
            '--status'\t'Show jobs in this status (repeatable)' \
            '-a'\t'Show jobs in every status' \
            '--all'\t'Show jobs in every status' \
            '-n'\t'Only jobs with this name' \
            '--name'\t'Only jobs with this name' \
            '-d'\t'Only jobs with this description' \
            '--description'\t'Only jobs with this description' \
            '-t'\t'Only jobs with all these tags (repeatable)' \
            '--tag'\t'Only jobs with all these tags (repeatable)' \
            '-o'\t'Only jobs of this owner (repeatable; ME is you)' \
            '--owner'\t'Only jobs of this owner (repeatable; ME is you)' \
            '--since'\t'Only jobs created at or after this time (ISO date or e.g' \
            '--until'\t'Only jobs created at or before this time' \
            '--recent-first'\t'Newest jobs first' \
            '--recent-last'\t'Newest jobs first' \
            '--last'\t'Only the N most recent jobs' \
            '--distinct'\t'Only the most recent job of each name (unnamed: all)' \
            '-q'\t'Print only job ids' \
            '--quiet'\t'Print only job ids' \
            '--format'\t'Columns, e.g' \
            '--watch'\t'Keep the list up to date: redrawn in place on a terminal, a line per change in a pipe' \
            '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '-s' '--status' '-n' '--name' '-d' '--description' '-t' '--tag' '-o' '--owner' '--since' '--until' '--last' '--format'
        case 'job port-forward'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs' '-*'
        case 'job run'
            set -g __neuro_opts '-s'\t'Resource preset (see `neuro config show`)' \
            '--preset'\t'Resource preset (see `neuro config show`)' \
            '-n'\t'Job name: 3-40 lower-case letters, digits, dashes' \
            '--name'\t'Job name: 3-40 lower-case letters, digits, dashes' \
            '--tag'\t'Tag the job (repeatable)' \
            '-d'\t'A free-text description' \
            '--description'\t'A free-text description' \
            '-e'\t'Environment variable (repeatable); VAR alone copies the local value; VAR=secret:KEY takes a secret' \
            '--env'\t'Environment variable (repeatable); VAR alone copies the local value; VAR=secret:KEY takes a secret' \
            '--env-file'\t'File of VAR=VAL lines (repeatable); -e wins over it' \
            '-v'\t'Mount storage:PATH:/path, disk:NAME:/path or secret:KEY:/path (repeatable)' \
            '--volume'\t'Mount storage:PATH:/path, disk:NAME:/path or secret:KEY:/path (repeatable)' \
            '-w'\t'Working directory of the command' \
            '--workdir'\t'Working directory of the command' \
            '--entrypoint'\t'Override the image\'s entrypoint' \
            '--life-span'\t'Stop the job after it ran this long, e.g' \
            '--life-span-signal'\t'Send SIG this long before the life span ends (to checkpoint), e.g' \
            '--detach'\t'Do not stream the output: print the job id and return' \
            '--wait-start'\t'Wait for the job to start before returning (--no-wait-start implies --detach)' \
            '--no-wait-start'\t'Wait for the job to start before returning (--no-wait-start implies --detach)' \
            '-q'\t'Print only the job id (and the output when attached)' \
            '--quiet'\t'Print only the job id (and the output when attached)' \
            '--restart'\t'Restart the job when it exits (with a growing delay)' \
            '--wait-for-seat'\t'Over your quota of running jobs: wait in the queue instead of failing' \
            '--schedule-timeout'\t'Fail if the job has not started within this time, e.g' \
            '--http-port'\t'Serve the job\'s HTTP port at its own URL (see `neuro job browse`)' \
            '--http-auth'\t'Require your token (or a shared user\'s) for the HTTP URL' \
            '--no-http-auth'\t'Require your token (or a shared user\'s) for the HTTP URL' \
            '--extshm'\t'Give the job a large /dev/shm (containers; e.g' \
            '--no-extshm'\t'Give the job a large /dev/shm (containers; e.g' \
            '--pass-config'\t'Let `neuro` and the SDK inside the job act as you (e.g' \
            '--privileged'\t'Run the container privileged (where the server allows it)' \
            '--share'\t'Share the job with USER (write: also attach, exec and kill it), as `neuro share` does' \
            '-t'\t'Allocate a TTY' \
            '-T'\t'Allocate a TTY' \
            '--tty'\t'Allocate a TTY' \
            '--no-tty'\t'Allocate a TTY' \
            '--detach-keys'\t'Key sequence that detaches from a TTY session (\'\' disables it)' \
            '--port-forward'\t'Forward a local port to the job\'s port while attached (repeatable)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '-s' '--preset' '-n' '--name' '--tag' '-d' '--description' '-e' '--env' '--env-file' '-v' '--volume' '-w' '--workdir' '--entrypoint' '--life-span' '--life-span-signal' '--restart' '--schedule-timeout' '--http-port' '--share' '--detach-keys' '--port-forward'
            set -g __neuro_args '-' '-*'
        case 'job send-signal'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs' '-'
        case 'job status'
            set -g __neuro_opts '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs'
        case 'job tags'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'job top'
            set -g __neuro_opts '-n'\t'Only jobs with this name' \
            '--name'\t'Only jobs with this name' \
            '-t'\t'Only jobs with all these tags' \
            '--tag'\t'Only jobs with all these tags' \
            '-o'\t'Only jobs of this owner (ME is you)' \
            '--owner'\t'Only jobs of this owner (ME is you)' \
            '--since'\t'Only jobs created since' \
            '--until'\t'Only jobs created until' \
            '--sort'\t'Sort by cpu, memory, gpu, gpu_memory, id, name or when (comma list; -KEY reverses)' \
            '--no-stream'\t'Print one sample of each job and exit' \
            '--timeout'\t'Stop after this many seconds (0: never)' \
            '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '-n' '--name' '-t' '--tag' '-o' '--owner' '--since' '--until' '--sort' '--timeout'
            set -g __neuro_args 'jobs*'
        case 'kill'
            set -g __neuro_opts '-s'\t'Send this signal instead of stopping the job (e.g' \
            '--signal'\t'Send this signal instead of stopping the job (e.g' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '-s' '--signal'
            set -g __neuro_args 'jobs*'
        case 'login'
            set -g __neuro_opts '--token'\t'API token (e.g' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--token'
            set -g __neuro_args '-'
        case 'logout'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'logs'
            set -g __neuro_opts '--since'\t'Only output printed at or after this time (ISO date, or a delta like 10m)' \
            '--timestamps'\t'Prefix each line with its time (RFC 3339, UTC)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--since'
            set -g __neuro_args 'jobs'
        case 'ls'
            set -g __neuro_opts '-l'\t'Also show sizes and times' \
            '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-'
        case 'mkdir'
            set -g __neuro_opts '-p'\t'Accepted, as mkdir -p has it: parents are always made, and an existing directory is fine' \
            '--parents'\t'Accepted, as mkdir -p has it: parents are always made, and an existing directory is fine' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-*'
        case 'port-forward'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs' '-*'
        case 'ps'
            set -g __neuro_opts '-s'\t'Show jobs in this status (repeatable)' \
            '--status'\t'Show jobs in this status (repeatable)' \
            '-a'\t'Show jobs in every status' \
            '--all'\t'Show jobs in every status' \
            '-n'\t'Only jobs with this name' \
            '--name'\t'Only jobs with this name' \
            '-d'\t'Only jobs with this description' \
            '--description'\t'Only jobs with this description' \
            '-t'\t'Only jobs with all these tags (repeatable)' \
            '--tag'\t'Only jobs with all these tags (repeatable)' \
            '-o'\t'Only jobs of this owner (repeatable; ME is you)' \
            '--owner'\t'Only jobs of this owner (repeatable; ME is you)' \
            '--since'\t'Only jobs created at or after this time (ISO date or e.g' \
            '--until'\t'Only jobs created at or before this time' \
            '--recent-first'\t'Newest jobs first' \
            '--recent-last'\t'Newest jobs first' \
            '--last'\t'Only the N most recent jobs' \
            '--distinct'\t'Only the most recent job of each name (unnamed: all)' \
            '-q'\t'Print only job ids' \
            '--quiet'\t'Print only job ids' \
            '--format'\t'Columns, e.g' \
            '--watch'\t'Keep the list up to date: redrawn in place on a terminal, a line per change in a pipe' \
            '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '-s' '--status' '-n' '--name' '-d' '--description' '-t' '--tag' '-o' '--owner' '--since' '--until' '--last' '--format'
        case 'rm'
            set -g __neuro_opts '-r'\t'Remove directories and their contents' \
            '--recursive'\t'Remove directories and their contents' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-*'
        case 'run'
            set -g __neuro_opts '-s'\t'Resource preset (see `neuro config show`)' \
            '--preset'\t'Resource preset (see `neuro config show`)' \
            '-n'\t'Job name: 3-40 lower-case letters, digits, dashes' \
            '--name'\t'Job name: 3-40 lower-case letters, digits, dashes' \
            '--tag'\t'Tag the job (repeatable)' \
            '-d'\t'A free-text description' \
            '--description'\t'A free-text description' \
            '-e'\t'Environment variable (repeatable); VAR alone copies the local value; VAR=secret:KEY takes a secret' \
            '--env'\t'Environment variable (repeatable); VAR alone copies the local value; VAR=secret:KEY takes a secret' \
            '--env-file'\t'File of VAR=VAL lines (repeatable); -e wins over it' \
            '-v'\t'Mount storage:PATH:/path, disk:NAME:/path or secret:KEY:/path (repeatable)' \
            '--volume'\t'Mount storage:PATH:/path, disk:NAME:/path or secret:KEY:/path (repeatable)' \
            '-w'\t'Working directory of the command' \
            '--workdir'\t'Working directory of the command' \
            '--entrypoint'\t'Override the image\'s entrypoint' \
            '--life-span'\t'Stop the job after it ran this long, e.g' \
            '--life-span-signal'\t'Send SIG this long before the life span ends (to checkpoint), e.g' \
            '--detach'\t'Do not stream the output: print the job id and return' \
            '--wait-start'\t'Wait for the job to start before returning (--no-wait-start implies --detach)' \
            '--no-wait-start'\t'Wait for the job to start before returning (--no-wait-start implies --detach)' \
            '-q'\t'Print only the job id (and the output when attached)' \
            '--quiet'\t'Print only the job id (and the output when attached)' \
            '--restart'\t'Restart the job when it exits (with a growing delay)' \
            '--wait-for-seat'\t'Over your quota of running jobs: wait in the queue instead of failing' \
            '--schedule-timeout'\t'Fail if the job has not started within this time, e.g' \
            '--http-port'\t'Serve the job\'s HTTP port at its own URL (see `neuro job browse`)' \
            '--http-auth'\t'Require your token (or a shared user\'s) for the HTTP URL' \
            '--no-http-auth'\t'Require your token (or a shared user\'s) for the HTTP URL' \
            '--extshm'\t'Give the job a large /dev/shm (containers; e.g' \
            '--no-extshm'\t'Give the job a large /dev/shm (containers; e.g' \
            '--pass-config'\t'Let `neuro` and the SDK inside the job act as you (e.g' \
            '--privileged'\t'Run the container privileged (where the server allows it)' \
            '--share'\t'Share the job with USER (write: also attach, exec and kill it), as `neuro share` does' \
            '-t'\t'Allocate a TTY' \
            '-T'\t'Allocate a TTY' \
            '--tty'\t'Allocate a TTY' \
            '--no-tty'\t'Allocate a TTY' \
            '--detach-keys'\t'Key sequence that detaches from a TTY session (\'\' disables it)' \
            '--port-forward'\t'Forward a local port to the job\'s port while attached (repeatable)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '-s' '--preset' '-n' '--name' '--tag' '-d' '--description' '-e' '--env' '--env-file' '-v' '--volume' '-w' '--workdir' '--entrypoint' '--life-span' '--life-span-signal' '--restart' '--schedule-timeout' '--http-port' '--share' '--detach-keys' '--port-forward'
            set -g __neuro_args '-' '-*'
        case 'secret'
            set -g __neuro_cmds 'add'\t'Add a secret or replace its value' \
            'ls'\t'List your secrets' \
            'rm'\t'Remove secrets'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'secret add'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-' '-'
        case 'secret ls'
            set -g __neuro_opts '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'secret rm'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-*'
        case 'server'
            set -g __neuro_cmds 'start'\t'Start the local server' \
            'status'\t'Show whether the local server runs' \
            'stop'\t'Stop the local server'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'server start'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'server status'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'server stop'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'share'
            set -g __neuro_opts '--revoke'\t'Take the access back instead' \
            '-l'\t'List who the job is shared with' \
            '--list'\t'List who the job is shared with' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs' '-' '=read,write,manage'
        case 'status'
            set -g __neuro_opts '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args 'jobs'
        case 'storage'
            set -g __neuro_cmds 'cp'\t'Copy files to or from storage' \
            'ls'\t'List a storage directory' \
            'mkdir'\t'Make storage directories' \
            'rm'\t'Remove files from storage'
            set -g __neuro_opts '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
        case 'storage cp'
            set -g __neuro_opts '-r'\t'Copy directories and their contents' \
            '--recursive'\t'Copy directories and their contents' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-' '-'
        case 'storage ls'
            set -g __neuro_opts '-l'\t'Also show sizes and times' \
            '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-'
        case 'storage mkdir'
            set -g __neuro_opts '-p'\t'Accepted, as mkdir -p has it: parents are always made, and an existing directory is fine' \
            '--parents'\t'Accepted, as mkdir -p has it: parents are always made, and an existing directory is fine' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-*'
        case 'storage rm'
            set -g __neuro_opts '-r'\t'Remove directories and their contents' \
            '--recursive'\t'Remove directories and their contents' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_args '-*'
        case 'top'
            set -g __neuro_opts '-n'\t'Only jobs with this name' \
            '--name'\t'Only jobs with this name' \
            '-t'\t'Only jobs with all these tags' \
            '--tag'\t'Only jobs with all these tags' \
            '-o'\t'Only jobs of this owner (ME is you)' \
            '--owner'\t'Only jobs of this owner (ME is you)' \
            '--since'\t'Only jobs created since' \
            '--until'\t'Only jobs created until' \
            '--sort'\t'Sort by cpu, memory, gpu, gpu_memory, id, name or when (comma list; -KEY reverses)' \
            '--no-stream'\t'Print one sample of each job and exit' \
            '--timeout'\t'Stop after this many seconds (0: never)' \
            '--json'\t'Print JSON (fields: docs/cli.md, JSON output)' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '-n' '--name' '-t' '--tag' '-o' '--owner' '--since' '--until' '--sort' '--timeout'
            set -g __neuro_args 'jobs*'
        case 'wait'
            set -g __neuro_opts '--for'\t'The state to wait for: finished (any end), succeeded, or running (has started)' \
            '--timeout'\t'Give up after this long (e.g' \
            '--exit-code'\t'Exit with the jobs\' own exit code (the highest of them) instead of 0' \
            '-h'\t'Show this message and exit' \
            '--help'\t'Show this message and exit'
            set -g __neuro_vopts '--for' '--timeout'
            set -g __neuro_args 'jobs*'
    end
end

function __neuro_optkind --description 'neuro: what the value of an option completes to'
    switch "$argv[1]|$argv[2]"
        case '|--color'
            echo '=auto,always,never'
        case 'job ls|-s' 'job ls|--status'
            echo '=pending,suspended,running,succeeded,failed,cancelled'
        case 'job run|-s' 'job run|--preset'
            echo 'presets'
        case 'job run|--env-file'
            echo 'file'
        case 'job run|--restart'
            echo '=never,on-failure,always'
        case 'ps|-s' 'ps|--status'
            echo '=pending,suspended,running,succeeded,failed,cancelled'
        case 'run|-s' 'run|--preset'
            echo 'presets'
        case 'run|--env-file'
            echo 'file'
        case 'run|--restart'
            echo '=never,on-failure,always'
        case 'wait|--for'
            echo '=finished,succeeded,running'
        case '*'
            echo -
    end
end

function __neuro_values --description 'neuro: values of a kind (jobs, presets, file, =A,B or -)'
    switch $argv[1]
        case jobs presets
            command neuro __complete $argv[1] 2>/dev/null
        case file
            __fish_complete_path $argv[2]
        case '=*'
            string split , -- (string sub -s 2 -- $argv[1])
    end
end

function __neuro_complete --description 'neuro: completions for the command line'
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l cmdpath
    set -l vopt
    set -l dd
    set -l npos 0
    __neuro_spec ''
    for w in $tokens[2..-1]
        if test -n "$vopt"
            set vopt
        else if test -n "$dd"
            set npos (math $npos + 1)
        else if test "$w" = --
            set dd 1
        else if string match -qr -- '^-.' $w
            contains -- $w $__neuro_vopts; and set vopt $w
        else if test $npos -eq 0; and contains -- $w (string replace -r '\t.*' '' -- $__neuro_cmds)
            set -a cmdpath $w
            __neuro_spec "$cmdpath"
        else
            set npos (math $npos + 1)
        end
    end
    if test -n "$vopt"
        __neuro_values (__neuro_optkind "$cmdpath" $vopt) $cur
    else if test -z "$dd"; and string match -q -- '--*=*' $cur
        set -l opt (string split -m 1 = -- $cur)[1]
        if contains -- $opt $__neuro_vopts
            for v in (__neuro_values (__neuro_optkind "$cmdpath" $opt) (string split -m 1 = -- $cur)[2])
                echo "$opt=$v"
            end
        end
    else if test -z "$dd"; and string match -q -- '-*' $cur
        string join \n -- $__neuro_opts
    else if set -q __neuro_cmds[1]
        string join \n -- $__neuro_cmds
    else
        set -l kind -
        if test $npos -lt (count $__neuro_args)
            set kind $__neuro_args[(math $npos + 1)]
        else if set -q __neuro_args[1]; and string match -q -- '*\*' $__neuro_args[-1]
            set kind $__neuro_args[-1]
        end
        __neuro_values (string trim -r -c '*' -- $kind) $cur
    end
end

complete -c neuro -e
complete -c neuro -f -a '(__neuro_complete)'
