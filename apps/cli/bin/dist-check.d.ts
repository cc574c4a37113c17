// Types for dist-check.js (plain JavaScript: it runs before any loader), for scripts/build.ts.
export declare const DIST_CONDITION: string;
export declare const BUILD_INFO: string;
export declare const PACKAGE_PARENTS: readonly string[];
export declare function workspacePackages(root: string): string[];
export declare function listFiles(dir: string): string[];
export declare function sourceDigest(pkgDir: string): string;
export declare function distProblem(root: string): string | null;
