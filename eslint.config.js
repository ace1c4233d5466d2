// Type-checked recommended rules of typescript-eslint over the whole tree.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/**", "dashboard/public/**", "data/**", ".tmp/**", "coverage/**", "**/*.mjs", "**/*.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // `const { dropped: _, ...rest } = value` is how a field is left out of a copy; the named field is meant unused.
      "@typescript-eslint/no-unused-vars": ["error", { ignoreRestSiblings: true }],
      // fastify plugins and hooks, parts' start() and close(), and the ports are async by contract, awaited or not.
      "@typescript-eslint/require-await": "off",
    },
  },
  {
    files: ["test/**/*.ts"],
    rules: {
      // vitest types its asymmetric matchers (expect.any, expect.stringContaining, ...) as any by design.
      "@typescript-eslint/no-unsafe-assignment": "off",
    },
  },
);
