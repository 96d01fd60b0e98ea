"""``scratchvae exercises``: write a workbook (start), grade it (check), or list the exercises.

Kept apart from :mod:`.main` so that the command line grows by one line there; nothing heavy is
imported until a subcommand runs.
"""

from .arguments import positive_float, positive_int


def add_parser(sub):
    p = sub.add_parser("exercises", help="write a workbook of exercises, or grade one",
                       description="Exercises made from scratchvae's own functions: `start DIR` writes "
                       "a workbook (one file per topic, in lesson order), `check DIR [NAME ...]` grades "
                       "it (outputs against the library's, gradient and derivation checks, known "
                       "mistakes named), `list` shows the exercises.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("start", help="write a fresh workbook into DIR (never over an existing one)")
    s.add_argument("dir", metavar="DIR")
    s.set_defaults(func=cmd_start)
    c = actions.add_parser("check", help="grade the workbook in DIR",
                           description="Grade the workbook in DIR: every exercise (then whole_model), or "
                           "the NAMEs given. Exits with status 0 only if every graded exercise passes.")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("names", nargs="*", metavar="NAME", help="exercises to grade (default: all)")
    c.add_argument("--json", metavar="FILE", help="also write the results in Gradescope's results.json format")
    c.add_argument("--timeout", type=positive_float, metavar="S", default=None,
                   help="time limit of one exercise, in seconds (default: 30)")
    c.add_argument("--jobs", type=positive_int, metavar="N", default=None,
                   help="exercises graded at once, each in its own process (default: 2, or 1 on one core)")
    c.set_defaults(func=cmd_check)
    ls = actions.add_parser("list", help="the exercises: lesson, file, checks and the mistakes they name")
    ls.set_defaults(func=cmd_list)
    return p


def cmd_start(args, argv):
    from ..exercises import catalog, start

    written = start(args.dir)
    for path in written:
        print(f"wrote {path}")
    skipped = [e.name for e in catalog.EXERCISES if e.library_function() is None]
    if skipped:
        print(f"(not in this version of the library, so not in the workbook: {', '.join(skipped)})")
    print(f"next: write a body, then `scratchvae exercises check {args.dir}`")
    return 0


def cmd_check(args, argv):
    from ..exercises import DEFAULT_TIMEOUT, grade, write_json

    timeout = args.timeout or DEFAULT_TIMEOUT
    print(f"grading the workbook in {args.dir} (at most {timeout:g} s per exercise)")
    report = grade(args.names or None, directory=args.dir, timeout=timeout, workers=args.jobs)
    if args.json:
        write_json(report, args.json)
        print(f"results written to {args.json}")
    return 0 if report.all_passed else 1


def cmd_list(args, argv):
    from ..exercises import catalog

    for e in catalog.EXERCISES:
        here = "" if e.library_function() is not None else "   (not in this version of the library)"
        print(f"{e.name}   lesson {e.lesson}, {e.file}{here}\n    checks: {e.checks}")
        for m in e.mistakes:
            print(f"    names: {m.says}")
    print(f"{catalog.WHOLE_MODEL}   every piece written, together: small VAEs trained on the digits must "
          f"reach the library's held-out ELBO and L_10")
    return 0
